//! The host fuzz targets' bodies, one module each; `fuzz_targets/*.rs` only
//! hand libFuzzer's input to `run`. Each `run` panics on a broken invariant,
//! which libFuzzer reports as a crash.

pub mod budget;
pub mod cmdbuf;
pub mod server;
pub mod text;

#[global_allocator]
static ALLOC: budget::CountingAlloc = budget::CountingAlloc;

/// Reads fields off the front of a fuzz input; past its end every read
/// gives zeroes, so any input is a complete (if short) program.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        self.u32() as u64 | (self.u32() as u64) << 32
    }
}
