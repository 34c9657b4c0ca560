"""`python -m usq_reference ulpips|nrq ...`: the oracle's command line."""
from usq_reference import main

main()
