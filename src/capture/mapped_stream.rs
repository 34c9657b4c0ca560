//! Driver buffers mapped into this process and streamed by index: the part of V4L2 capture
//! that talks to the driver (REQBUFS, QUERYBUF and mmap, QBUF/DQBUF, STREAMON/OFF), with
//! poll for frames and for the driver's source-change events. `v4l2` holds the policy.

use super::source_change;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use v4l::device::Handle;
use v4l::v4l_sys::{v4l2_buffer, v4l2_requestbuffers};
use v4l::v4l2::vidioc;

/// Driver buffers mapped into this process, queued and dequeued by index.
pub(crate) struct MappedStream {
    handle: Arc<Handle>,
    buffers: Vec<(*mut u8, usize)>,
    streaming: bool,
    /// The driver sends source-change events (most do not).
    source_events: bool,
}

/// What a wait on the stream found.
pub(crate) enum Dequeued {
    /// A filled buffer: its index and the driver's description.
    Frame(usize, v4l2_buffer),
    /// Nothing yet.
    Nothing,
    /// The driver announced that its source changed resolution or format.
    SourceChanged,
}

fn capture_buffer(index: u32) -> v4l2_buffer {
    // SAFETY: v4l2_buffer is a plain C struct for which all-zero is a valid value.
    let mut b: v4l2_buffer = unsafe { std::mem::zeroed() };
    b.type_ = v4l::buffer::Type::VideoCapture as u32;
    b.memory = v4l::memory::Memory::Mmap as u32;
    b.index = index;
    b
}

impl MappedStream {
    pub(crate) fn new(handle: Arc<Handle>, count: u32) -> io::Result<MappedStream> {
        // SAFETY: as above.
        let mut req: v4l2_requestbuffers = unsafe { std::mem::zeroed() };
        req.count = count;
        req.type_ = v4l::buffer::Type::VideoCapture as u32;
        req.memory = v4l::memory::Memory::Mmap as u32;
        // SAFETY: the argument is the struct this request reads and writes.
        unsafe { v4l::v4l2::ioctl(handle.fd(), vidioc::VIDIOC_REQBUFS, &mut req as *mut _ as *mut _)? };
        if req.count == 0 {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "the driver granted no buffers"));
        }
        let mut stream = MappedStream { handle, buffers: Vec::new(), streaming: false, source_events: false };
        for index in 0..req.count {
            let mut b = capture_buffer(index);
            // SAFETY: as above; on error `stream`'s Drop releases what was mapped so far.
            unsafe { v4l::v4l2::ioctl(stream.handle.fd(), vidioc::VIDIOC_QUERYBUF, &mut b as *mut _ as *mut _)? };
            let len = b.length as usize;
            // SAFETY: maps the buffer the driver just described, at its offset.
            let ptr = unsafe {
                v4l::v4l2::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    stream.handle.fd(),
                    b.m.offset as libc::off_t,
                )?
            };
            stream.buffers.push((ptr as *mut u8, len));
        }
        Ok(stream)
    }

    pub(crate) fn queue(&mut self, index: usize) -> io::Result<()> {
        let mut b = capture_buffer(index as u32);
        // SAFETY: as above.
        unsafe { v4l::v4l2::ioctl(self.handle.fd(), vidioc::VIDIOC_QBUF, &mut b as *mut _ as *mut _) }
    }

    pub(crate) fn start(&mut self) -> io::Result<()> {
        for i in 0..self.buffers.len() {
            self.queue(i)?;
        }
        // Before STREAMON, so that no change between the two goes unheard.
        self.source_events = source_change::subscribe(self.handle.fd());
        let mut kind = v4l::buffer::Type::VideoCapture as u32;
        // SAFETY: STREAMON reads the buffer type.
        unsafe { v4l::v4l2::ioctl(self.handle.fd(), vidioc::VIDIOC_STREAMON, &mut kind as *mut _ as *mut _)? };
        self.streaming = true;
        Ok(())
    }

    /// Waits up to `timeout_ms` for a filled buffer or a source-change event.
    pub(crate) fn dequeue(&mut self, timeout_ms: i32) -> io::Result<Dequeued> {
        let fd = self.handle.fd();
        let events = libc::POLLIN | if self.source_events { libc::POLLPRI } else { 0 };
        let mut p = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one pollfd, alive for the call.
        match unsafe { libc::poll(&mut p, 1, timeout_ms) } {
            0 => return Ok(Dequeued::Nothing),
            -1 => {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted { Ok(Dequeued::Nothing) } else { Err(e) };
            }
            _ => {}
        }
        if p.revents & libc::POLLPRI != 0 {
            if source_change::take(fd)? {
                return Ok(Dequeued::SourceChanged);
            }
            if p.revents & !libc::POLLPRI == 0 {
                return Ok(Dequeued::Nothing);
            }
        }
        // A buffer, or an error (POLLERR) that DQBUF names.
        let mut b = capture_buffer(0);
        // SAFETY: as above.
        match unsafe { v4l::v4l2::ioctl(fd, vidioc::VIDIOC_DQBUF, &mut b as *mut _ as *mut _) } {
            Ok(()) if (b.index as usize) < self.buffers.len() => Ok(Dequeued::Frame(b.index as usize, b)),
            Ok(()) => {
                Err(io::Error::other(format!("the driver returned buffer {} of {}", b.index, self.buffers.len())))
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                // Ready without a buffer: do not spin on a poll that keeps saying ready.
                std::thread::sleep(Duration::from_millis(1));
                Ok(Dequeued::Nothing)
            }
            Err(e) => Err(e),
        }
    }

    /// The bytes the driver filled in buffer `index`.
    pub(crate) fn data(&self, index: usize, meta: &v4l2_buffer) -> &[u8] {
        let (ptr, len) = self.buffers[index];
        let used = match meta.bytesused as usize {
            0 => len,
            n => n.min(len),
        };
        // SAFETY: the mapping is alive while `self` is, and the driver does not write to a
        // dequeued buffer until it is queued again (which needs `&mut self`).
        unsafe { std::slice::from_raw_parts(ptr, used) }
    }
}

impl Drop for MappedStream {
    fn drop(&mut self) {
        // Best effort and never a panic: the device may be gone.
        if self.streaming {
            let mut kind = v4l::buffer::Type::VideoCapture as u32;
            // SAFETY: as above.
            let _ =
                unsafe { v4l::v4l2::ioctl(self.handle.fd(), vidioc::VIDIOC_STREAMOFF, &mut kind as *mut _ as *mut _) };
        }
        for &(ptr, len) in &self.buffers {
            // SAFETY: each pair is a mapping made in `new` and not unmapped since.
            let _ = unsafe { v4l::v4l2::munmap(ptr as *mut _, len) };
        }
        if !self.buffers.is_empty() {
            // SAFETY: as above.
            let mut req: v4l2_requestbuffers = unsafe { std::mem::zeroed() };
            req.type_ = v4l::buffer::Type::VideoCapture as u32;
            req.memory = v4l::memory::Memory::Mmap as u32;
            // SAFETY: as above.
            let _ = unsafe { v4l::v4l2::ioctl(self.handle.fd(), vidioc::VIDIOC_REQBUFS, &mut req as *mut _ as *mut _) };
        }
    }
}
