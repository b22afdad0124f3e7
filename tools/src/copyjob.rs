//! The DMA copy job every guest test uses to show that the NPU works: a
//! command buffer that moves `len` bytes from one NPU address to another
//! through SRAM, and the buffer objects to run it on. Errors keep the errno
//! or the job's outcome as values, so a caller can tell an expected
//! failure (the device went away) from a wrong one by value.

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Insn, Strided};
use npu_uapi as uapi;
use std::fmt;
use std::fs::File;

/// How long the helpers wait for one copy job.
pub const WAIT_NS: i64 = 30_000_000_000;

/// Why a copy job did not give the right result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobError {
    /// An ioctl failed: which one, and its errno.
    Errno { op: &'static str, errno: i32 },
    /// mmap of a buffer object failed with this errno.
    Map(i32),
    /// The job ended with this outcome instead of success.
    Outcome {
        status: u32,
        error: i32,
        fault_addr: u64,
    },
    /// The destination differs from what the job should have written.
    Data { offset: usize, got: u8, want: u8 },
}

impl JobError {
    /// The errno of a failed ioctl or mapping, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match *self {
            JobError::Errno { errno, .. } | JobError::Map(errno) => Some(errno),
            _ => None,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |e: i32| std::io::Error::from_raw_os_error(e).to_string();
        match *self {
            JobError::Errno { op, errno } => write!(f, "{op}: errno {errno} ({})", name(errno)),
            JobError::Map(errno) => write!(f, "mmap: errno {errno} ({})", name(errno)),
            JobError::Outcome {
                status,
                error,
                fault_addr,
            } => write!(
                f,
                "job failed: status {status:#x} error {error} at {fault_addr:#x}"
            ),
            JobError::Data { offset, got, want } => write!(
                f,
                "wrong data at byte {offset}: got {got:#x}, want {want:#x}"
            ),
        }
    }
}

impl From<JobError> for String {
    fn from(e: JobError) -> String {
        e.to_string()
    }
}

fn errno(op: &'static str) -> impl Fn(i32) -> JobError {
    move |errno| JobError::Errno { op, errno }
}

/// `len` bytes from `src_va` to `dst_va` through SRAM address 0, then END.
pub fn insns(src_va: u64, dst_va: u64, len: u32) -> Vec<Insn> {
    let c = Strided::contiguous(len);
    vec![
        Insn::DmaLoad {
            va: src_va,
            sram: 0,
            mem: c,
            sram_layout: c,
        },
        Insn::DmaStore {
            va: dst_va,
            sram: 0,
            mem: c,
            sram_layout: c,
        },
        Insn::End,
    ]
}

/// `len` bytes that differ from one `seed` to the next and from zero.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8 ^ 0x5a)
        .collect()
}

/// The job succeeded, or the outcome as an error.
pub fn ok_outcome(w: &uapi::drm_onpu_wait) -> Result<(), JobError> {
    if w.status == uapi::DRM_ONPU_JOB_OK && w.error == 0 {
        Ok(())
    } else {
        Err(JobError::Outcome {
            status: w.status,
            error: w.error,
            fault_addr: w.fault_addr,
        })
    }
}

fn map(file: &File, bo: &Bo) -> Result<Mapping, JobError> {
    Mapping::new(file, bo).map_err(|e| JobError::Map(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// A source and a destination object of `len` bytes and a command buffer
/// that copies one to the other, all of one file.
pub struct CopyJob {
    pub src: Bo,
    pub src_va: u64,
    pub dst: Bo,
    pub dst_va: u64,
    pub cmd: Bo,
    pub len: u32,
    size: u32,
}

impl CopyJob {
    /// Fresh source and destination objects.
    pub fn new(file: &File, len: u32) -> Result<CopyJob, JobError> {
        let src = accel::bo_create(file, u64::from(len)).map_err(errno("bo_create"))?;
        CopyJob::from_src(file, src, len)
    }

    /// Copy from `src`, an object of this file (e.g. an imported dma-buf).
    pub fn from_src(file: &File, src: Bo, len: u32) -> Result<CopyJob, JobError> {
        let dst = accel::bo_create(file, u64::from(len)).map_err(errno("bo_create"))?;
        let cmd = accel::bo_create(file, 4096).map_err(errno("bo_create"))?;
        let src_va = accel::bo_npu_addr(file, src.handle).map_err(errno("bo_info"))?;
        let dst_va = accel::bo_npu_addr(file, dst.handle).map_err(errno("bo_info"))?;
        let mut job = CopyJob {
            src,
            src_va,
            dst,
            dst_va,
            cmd,
            len,
            size: 0,
        };
        job.program(file, &[])?;
        Ok(job)
    }

    /// Write the command buffer: `prefix` (e.g. a fault-injection MARK),
    /// then the copy.
    pub fn program(&mut self, file: &File, prefix: &[Insn]) -> Result<(), JobError> {
        let mut all = prefix.to_vec();
        all.extend(insns(self.src_va, self.dst_va, self.len));
        let code = assemble(&all);
        map(file, &self.cmd)?.as_mut_slice()[..code.len()].copy_from_slice(&code);
        self.size = code.len() as u32;
        Ok(())
    }

    /// The objects as a job lists them: source read, destination written.
    pub fn refs(&self) -> [uapi::drm_onpu_bo_ref; 2] {
        [
            uapi::drm_onpu_bo_ref {
                handle: self.src.handle,
                flags: uapi::DRM_ONPU_BO_READ,
            },
            uapi::drm_onpu_bo_ref {
                handle: self.dst.handle,
                flags: uapi::DRM_ONPU_BO_WRITE,
            },
        ]
    }

    /// SUBMIT with every other field as given in `req` (syncobjs; queue 0
    /// means the file's [`accel::FIRST_QUEUE`]); the seqno.
    pub fn submit_with(
        &self,
        file: &File,
        req: &mut uapi::drm_onpu_submit,
    ) -> Result<u64, JobError> {
        let refs = self.refs();
        if req.queue_id == 0 {
            req.queue_id = accel::FIRST_QUEUE;
        }
        req.cmdbuf_handle = self.cmd.handle;
        req.cmdbuf_offset = 0;
        req.cmdbuf_size = self.size;
        req.bos = accel::obj_array(&refs);
        accel::submit(file, req).map_err(errno("submit"))
    }

    /// Queue the job; its seqno.
    pub fn submit(&self, file: &File, timeout_ms: u32) -> Result<u64, JobError> {
        self.submit_with(
            file,
            &mut uapi::drm_onpu_submit {
                timeout_ms,
                ..Default::default()
            },
        )
    }

    pub fn fill_src(&self, file: &File, bytes: &[u8]) -> Result<(), JobError> {
        map(file, &self.src)?.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    pub fn clear_dst(&self, file: &File) -> Result<(), JobError> {
        map(file, &self.dst)?.as_mut_slice().fill(0);
        Ok(())
    }

    /// The destination holds `want` (read through a CPU mapping).
    pub fn check_dst(&self, file: &File, want: &[u8]) -> Result<(), JobError> {
        let mut m = map(file, &self.dst)?;
        let got = &m.as_mut_slice()[..want.len()];
        match got.iter().zip(want).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(offset) => Err(JobError::Data {
                offset,
                got: got[offset],
                want: want[offset],
            }),
        }
    }

    /// Wait for `seqno` (up to WAIT_NS); it must have succeeded.
    pub fn wait_ok(file: &File, seqno: u64) -> Result<uapi::drm_onpu_wait, JobError> {
        let w = accel::wait(file, seqno, WAIT_NS).map_err(errno("wait"))?;
        ok_outcome(&w)?;
        Ok(w)
    }

    /// Clear the destination, run the job, check the destination holds
    /// what the source holds now (`want`); the WAIT outcome.
    pub fn run_expecting(&self, file: &File, want: &[u8]) -> Result<uapi::drm_onpu_wait, JobError> {
        self.clear_dst(file)?;
        let seqno = self.submit(file, 0)?;
        let w = CopyJob::wait_ok(file, seqno)?;
        self.check_dst(file, want)?;
        Ok(w)
    }

    /// Put `bytes` in the source and run the job; the WAIT outcome.
    pub fn run(&self, file: &File, bytes: &[u8]) -> Result<uapi::drm_onpu_wait, JobError> {
        self.fill_src(file, bytes)?;
        self.run_expecting(file, bytes)
    }
}
