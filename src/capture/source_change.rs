//! V4L2 source-change events: how a driver says that what its input sends changed (an HDMI
//! or SDI source switched resolution or format), so that the stream is negotiated again at
//! once rather than after seconds of buffers of the wrong size.
//!
//! The `v4l` crate has no wrappers for the event ioctls; these are the two usq needs, on the
//! crate's `ioctl` and the kernel header's structs. Most drivers cannot send the event (UVC
//! answers EINVAL to the subscription): then a change shows as unusable buffers, and the
//! stream's no-usable-frame timeout reopens the device instead.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;
use v4l::v4l_sys::{V4L2_EVENT_SOURCE_CHANGE, V4L2_EVENT_SRC_CH_RESOLUTION, v4l2_event, v4l2_event_subscription};
use v4l::v4l2::vidioc::_IOC_TYPE;

/// An ioctl request number as asm-generic/ioctl.h makes it (x86 and ARM use it): direction
/// (1 write, 2 read), the struct's size, type 'V' and the number.
const fn request(dir: u32, nr: u32, size: usize) -> _IOC_TYPE {
    ((dir << 30) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr) as _IOC_TYPE
}

/// `_IOR('V', 89, struct v4l2_event)`.
pub(crate) const VIDIOC_DQEVENT: _IOC_TYPE = request(2, 89, size_of::<v4l2_event>());
/// `_IOW('V', 90, struct v4l2_event_subscription)`.
pub(crate) const VIDIOC_SUBSCRIBE_EVENT: _IOC_TYPE = request(1, 90, size_of::<v4l2_event_subscription>());

/// Asks the driver behind `fd` for source-change events; whether it will send them.
pub(crate) fn subscribe(fd: RawFd) -> bool {
    // SAFETY: a plain C struct for which all-zero is a valid value.
    let mut sub: v4l2_event_subscription = unsafe { std::mem::zeroed() };
    sub.type_ = V4L2_EVENT_SOURCE_CHANGE;
    // SAFETY: the argument is the struct this request reads.
    unsafe { v4l::v4l2::ioctl(fd, VIDIOC_SUBSCRIBE_EVENT, &mut sub as *mut _ as *mut _) }.is_ok()
}

/// Takes the events waiting on `fd` (poll said POLLPRI): whether one of them says the source
/// changed resolution or format.
pub(crate) fn take(fd: RawFd) -> io::Result<bool> {
    let mut changed = false;
    // The driver queues a few events at most; the bound keeps a driver that always has one
    // from holding the stream here.
    for _ in 0..64 {
        // SAFETY: as above.
        let mut ev: v4l2_event = unsafe { std::mem::zeroed() };
        // SAFETY: the argument is the struct this request writes.
        match unsafe { v4l::v4l2::ioctl(fd, VIDIOC_DQEVENT, &mut ev as *mut _ as *mut _) } {
            Ok(()) => {
                // SAFETY: the union's member for this event type, as the driver filled it.
                let changes = unsafe { ev.u.src_change.changes };
                changed |= ev.type_ == V4L2_EVENT_SOURCE_CHANGE && changes & V4L2_EVENT_SRC_CH_RESOLUTION != 0;
                if ev.pending == 0 {
                    break;
                }
            }
            // ENOENT: no event left.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers linux/videodev2.h gives on 64-bit x86 and ARM (checked against the C
    /// header by the end-to-end test's shim, which matches requests by them).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn request_numbers_match_the_kernel_header() {
        assert_eq!(VIDIOC_SUBSCRIBE_EVENT as u32, 0x4020_565a);
        assert_eq!(VIDIOC_DQEVENT as u32, 0x8088_5659);
    }
}
