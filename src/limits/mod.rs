//! Keys' and targets' limits, enforced across shards with no lock on the request
//! path: capacity leased from gateway-wide counts ([`lease`]), charged as requests
//! go ([`gate`]); what tokens cost
//! ([`prices`]); spend per key against its budget ([`budget`]), kept across
//! restarts ([`state`]) and flushed by the control plane ([`spend`]).

pub mod budget;
pub mod gate;
pub mod lease;
pub mod prices;
pub mod spend;
pub mod state;
