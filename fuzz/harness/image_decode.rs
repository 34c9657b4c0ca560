//! Image decoding to gray (PNG, JPEG, BMP, TIFF; 8/16 bit; gray or colour) from arbitrary bytes.

pub fn run(data: &[u8]) {
    if let Ok(f) = usq::GrayFrame::decode(data) {
        assert_eq!(f.pixels.len(), f.width * f.height);
    }
}
