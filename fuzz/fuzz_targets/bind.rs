//! Binding and delegating `/x0` (and `/svc/web`) with an arbitrary dtab, as a request's
//! `l5d-dtab` could carry it: always ends (within `BindLimits`), never panics or overflows the
//! stack, whatever the dtab nests, unions or loops.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchboard_namer_core::bind::{self, LookupDeps};
use switchboard_namer_core::interpreter::DtabLookup;
use switchboard_namer_core::{DefaultInterpreter, Dtab, Path};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dtab) = Dtab::read(text) else {
        return;
    };
    runtime().block_on(async {
        let interp = DefaultInterpreter::new(vec![]);
        for p in ["/x0", "/svc/web"] {
            let path = Path::read(p).expect("path");
            let lookup = DtabLookup {
                interp: interp.clone(),
                dtab: dtab.clone(),
            };
            let mut deps = LookupDeps::default();
            let _ = bind::bind_snapshot(&lookup, &path, &mut deps);
            let mut deps = LookupDeps::default();
            let _ = interp.delegate_snapshot(&dtab, &path, &mut deps);
        }
    });
});
