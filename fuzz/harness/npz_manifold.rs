//! An organ manifold `.npz` from arbitrary bytes: an error or a checked organ, never a panic,
//! an abort or an allocation beyond the entry limits.

pub fn run(data: &[u8]) {
    let _ = usq::OrganModel::from_npz("Fuzz", std::io::Cursor::new(data));
}
