//! The dtab language's parsers on arbitrary text: a path, a name tree and a dtab each either
//! parse or fail with an error, never panic or overflow; what parses shows back to text that
//! parses again, and showing is a fixpoint after one round (Finagle shows weights with two
//! decimals, so `1.00000000001 * /a` shows as `1.00*/a`, which then shows as `/a`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_namer_core::{Dtab, NameTree, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Path::read(text) {
        assert_eq!(Path::read(&p.show()).ok(), Some(p));
    }
    if let Ok(t) = NameTree::<Path>::read(text) {
        let once = NameTree::<Path>::read(&t.show()).expect("a shown tree parses");
        let twice = NameTree::<Path>::read(&once.show()).expect("a shown tree parses");
        assert_eq!(twice.show(), once.show());
        let _ = t.simplified();
    }
    if let Ok(d) = Dtab::read(text) {
        let once = Dtab::read(&d.show()).expect("a shown dtab parses");
        let twice = Dtab::read(&once.show()).expect("a shown dtab parses");
        assert_eq!(twice.show(), once.show());
    }
});
