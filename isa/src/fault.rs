//! Job status codes, as written in completion records and FAULT_STATUS.

/// Why a job ended. `Ok` is 0; every other value is a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Fault {
    Ok = 0,
    /// An access hit a page that is not VALID (or a missing table).
    MmuUnmapped = 1,
    /// A read without READ or a write without WRITE permission.
    MmuPermission = 2,
    /// An NPU virtual address at or above 2^VA_BITS.
    MmuVaRange = 3,
    /// The opcode is not defined in this ISA version.
    BadOpcode = 4,
    /// A selector, flag, reserved field, shape or alignment is invalid.
    BadOperand = 5,
    /// An operand range lies (partly) outside the SRAM.
    SramRange = 6,
    /// The command buffer ended (or exceeded its size) without END.
    CmdbufOverrun = 7,
    /// The job's context is out of range or its descriptor is not VALID.
    BadContext = 8,
    /// A page table or data access hit a bus address outside host memory.
    DmaBusError = 9,
    /// The submission entry is malformed (size, flags, reserved bytes).
    BadSubmission = 10,
    /// The job was aborted by a soft reset (never written to a record;
    /// drivers use it for jobs they cancel).
    Aborted = 11,
    /// A GATHER index lies outside its table.
    IndexRange = 12,
}

impl Fault {
    pub const fn code(self) -> u32 {
        self as u32
    }
    pub fn from_code(code: u32) -> Option<Fault> {
        use Fault::*;
        Some(match code {
            0 => Ok,
            1 => MmuUnmapped,
            2 => MmuPermission,
            3 => MmuVaRange,
            4 => BadOpcode,
            5 => BadOperand,
            6 => SramRange,
            7 => CmdbufOverrun,
            8 => BadContext,
            9 => DmaBusError,
            10 => BadSubmission,
            11 => Aborted,
            12 => IndexRange,
            _ => return None,
        })
    }
    /// Whether the fault came from the MMU (raises MMU_FAULT too).
    pub const fn is_mmu(self) -> bool {
        matches!(
            self,
            Fault::MmuUnmapped | Fault::MmuPermission | Fault::MmuVaRange
        )
    }
    pub const fn name(self) -> &'static str {
        use Fault::*;
        match self {
            Ok => "ok",
            MmuUnmapped => "mmu-unmapped",
            MmuPermission => "mmu-permission",
            MmuVaRange => "mmu-va-range",
            BadOpcode => "bad-opcode",
            BadOperand => "bad-operand",
            SramRange => "sram-range",
            CmdbufOverrun => "cmdbuf-overrun",
            BadContext => "bad-context",
            DmaBusError => "dma-bus-error",
            BadSubmission => "bad-submission",
            Aborted => "aborted",
            IndexRange => "index-range",
        }
    }
}

/// The normative REQUANT arithmetic for one element: exact product,
/// round half up on the shift, add the zero point, clamp.
pub fn requantize(acc: i32, bias: i32, mult: i32, shift: u8, zero_point: i8, lo: i8, hi: i8) -> i8 {
    // (acc + bias) * mult reaches 2^63 ((-2^31 - 2^31) * -2^31), one bit
    // more than i64 holds, and the rounding term adds to it: i128.
    let v = (acc as i128 + bias as i128) * mult as i128;
    let shift = shift.clamp(1, 62) as u32;
    let r = (v + (1i128 << (shift - 1))) >> shift;
    let q = r + zero_point as i128;
    q.clamp(lo as i128, hi as i128) as i8
}
