//! Switchboard
