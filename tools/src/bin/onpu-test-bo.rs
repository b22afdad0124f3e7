//! Selftest: buffer objects. Create, describe, map and access from the CPU,
//! close, share through PRIME, the documented errors, and isolation between
//! two open files.

use npu::device::raw::{self as accel, Mapping};
use npu_tools::tap::Tap;
use npu_uapi as uapi;

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn pattern(i: usize, seed: u8) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed)
}

fn main() {
    let mut tap = Tap::new(9);
    let path = match accel::find_device() {
        Ok(p) => p,
        Err(e) => {
            println!("# {e}");
            std::process::exit(tap.finish());
        }
    };
    let (Ok(file), Ok(other)) = (accel::open(&path), accel::open(&path)) else {
        tap.check("open twice", Err("open failed".into()));
        std::process::exit(tap.finish());
    };

    // 1: sizes round up to pages.
    let bos: Vec<_> = [1u64, 4096, (1 << 20) + 3]
        .iter()
        .map(|&s| accel::bo_create(&file, s))
        .collect();
    let sizes: Vec<_> = bos.iter().map(|b| b.as_ref().map(|b| b.size)).collect();
    tap.check(
        "bo-create rounds sizes up to whole pages",
        expect(sizes == [Ok(4096), Ok(4096), Ok((1 << 20) + 4096)], || {
            format!("{sizes:?}")
        }),
    );

    // 2: CPU mapping, write then read back through a second mapping.
    let r = (|| -> Result<(), String> {
        let bo = bos[2].as_ref().map_err(|e| format!("errno {e}"))?;
        let mut m = Mapping::new(&file, bo).map_err(|e| e.to_string())?;
        for (i, b) in m.as_mut_slice().iter_mut().enumerate() {
            *b = pattern(i, 7);
        }
        drop(m);
        let mut m2 = Mapping::new(&file, bo).map_err(|e| e.to_string())?;
        let bad = m2
            .as_mut_slice()
            .iter()
            .enumerate()
            .position(|(i, &b)| b != pattern(i, 7));
        expect(bad.is_none(), || format!("mismatch at byte {bad:?}"))
    })();
    tap.check("mmap write and read back", r);

    // 3: errors of bo-create.
    let zero = accel::bo_create(&file, 0).err();
    let huge = accel::bo_create(&file, uapi::DRM_ONPU_BO_MAX_SIZE + 1).err();
    let mut c = uapi::drm_onpu_bo_create {
        size: 4096,
        flags: !uapi::DRM_ONPU_BO_CREATE_FLAGS,
        ..Default::default()
    };
    let flags = accel::ioctl(&file, &mut c).err();
    tap.check(
        "bo-create rejects size 0, oversize and unknown flags with EINVAL",
        expect([zero, huge, flags] == [Some(libc::EINVAL); 3], || {
            format!("{zero:?} {huge:?} {flags:?}")
        }),
    );

    // 4: errors of bo-info.
    let bad_handle = accel::bo_info(&file, 0xdead).err();
    let mut i = uapi::drm_onpu_bo_info {
        handle: bos[0].as_ref().map(|b| b.handle).unwrap_or(0),
        flags: 1,
        ..Default::default()
    };
    let flags = accel::ioctl(&file, &mut i).err();
    tap.check(
        "bo-info: ENOENT for an unknown handle, EINVAL for flags",
        expect(
            bad_handle == Some(libc::ENOENT) && flags == Some(libc::EINVAL),
            || format!("{bad_handle:?} {flags:?}"),
        ),
    );

    // 5: handles are per file.
    let h = bos[1].as_ref().map(|b| b.handle).unwrap_or(0);
    let r = accel::bo_info(&other, h).err();
    tap.check(
        "another open file cannot use this file's handle",
        expect(r == Some(libc::ENOENT), || format!("{r:?}")),
    );

    // 6: close.
    let closed = accel::gem_close(&file, h);
    let after = accel::bo_info(&file, h).err();
    let again = accel::gem_close(&file, h).err();
    tap.check(
        "gem-close releases the handle; closing twice is EINVAL",
        expect(
            closed.is_ok() && after == Some(libc::ENOENT) && again == Some(libc::EINVAL),
            || format!("{closed:?} {after:?} {again:?}"),
        ),
    );

    // 7-8: PRIME: export, import into the other file, same memory.
    let r = (|| -> Result<(), String> {
        let bo = bos[2].as_ref().map_err(|e| format!("errno {e}"))?;
        let fd = accel::prime_export(&file, bo.handle).map_err(|e| format!("export errno {e}"))?;
        let self_import =
            accel::prime_import(&file, &fd).map_err(|e| format!("self import errno {e}"))?;
        expect(self_import == bo.handle, || {
            format!("re-import gave handle {self_import}, not {}", bo.handle)
        })?;
        let h2 = accel::prime_import(&other, &fd).map_err(|e| format!("import errno {e}"))?;
        let bo2 = accel::bo_info(&other, h2).map_err(|e| format!("info errno {e}"))?;
        expect(bo2.size == bo.size, || {
            format!("imported size {}", bo2.size)
        })?;
        let mut m = Mapping::new(&other, &bo2).map_err(|e| e.to_string())?;
        let bad = m
            .as_mut_slice()
            .iter()
            .enumerate()
            .position(|(i, &b)| b != pattern(i, 7));
        expect(bad.is_none(), || {
            format!("imported contents differ at {bad:?}")
        })
    })();
    tap.check("prime export, import into another file, same contents", r);
    let r = accel::prime_import(&other, &std::io::stdin()).err();
    tap.check(
        "prime import of a non-dma-buf fd fails",
        expect(r.is_some(), || "accepted".into()),
    );

    // 9: the exporter closing first does not take the memory from the importer.
    let r = (|| -> Result<(), String> {
        let bo = accel::bo_create(&file, 8192).map_err(|e| format!("errno {e}"))?;
        Mapping::new(&file, &bo)
            .map_err(|e| e.to_string())?
            .as_mut_slice()
            .fill(0x5a);
        let fd = accel::prime_export(&file, bo.handle).map_err(|e| format!("export errno {e}"))?;
        let h2 = accel::prime_import(&other, &fd).map_err(|e| format!("import errno {e}"))?;
        drop(fd);
        accel::gem_close(&file, bo.handle).map_err(|e| format!("close errno {e}"))?;
        let bo2 = accel::bo_info(&other, h2).map_err(|e| format!("info errno {e}"))?;
        let mut m = Mapping::new(&other, &bo2).map_err(|e| e.to_string())?;
        expect(m.as_mut_slice().iter().all(|&b| b == 0x5a), || {
            "contents lost".into()
        })
    })();
    tap.check("a shared buffer outlives its exporter's handle", r);
    std::process::exit(tap.finish());
}
