"""Where things are. Paths are relative to the models/ folder (the one holding this package), as
they were when the tools were scripts in models/, so outputs land where they always did; this needs
the editable install (`pip install -e models/`), which runs the package from models/ itself."""
import os

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # models/
ROOT = os.path.dirname(MODELS)                                          # the repository
SHARED_DATA = os.environ.get("USQ_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))  # read at run time, never copied
USQ = os.path.join(ROOT, "target", "release", "usq")                    # `cargo build --release`
