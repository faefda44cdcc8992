//! Keys' and targets' limits, enforced across shards with no lock on the request
//! path: capacity leased from gateway-wide counts ([`lease`]).

pub mod gate;
pub mod lease;
