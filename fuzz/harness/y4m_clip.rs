//! A .y4m clip from arbitrary bytes: the header, then up to four frames, as `usq live --input`
//! reads them. An error or frames, never a panic, an abort or an allocation past the frame
//! limits.
use usq::clip::y4m;

pub fn run(data: &[u8]) {
    let mut r = std::io::Cursor::new(data);
    let Ok(h) = y4m::read_header(&mut r) else { return };
    let mut luma = vec![0u8; h.width * h.height];
    for _ in 0..4 {
        if !matches!(y4m::read_frame(&mut r, &mut luma, h.chroma_bytes), Ok(true)) {
            break;
        }
    }
}
