//! The scenario's mock providers: started in-process with a control listener each,
//! faulted through `POST /_mock/fault` on that listener, shut down on drop.

use std::net::SocketAddr;
use std::time::Duration;

use super::scenario::MockSpec;
use super::SuiteError;
use crate::client::Client;
use crate::mock::{self, Continuation, Fault, MockConfig, MockHandle};

/// One running mock and the address that controls it.
#[derive(Clone, Debug)]
pub struct Mock {
    pub name: String,
    pub handle: MockHandle,
    pub control: SocketAddr,
}

impl Mock {
    /// Switches the fault through the control endpoint, like an operator would.
    pub fn set_fault(&self, fault: &Fault) -> Result<(), SuiteError> {
        self.control("fault", "/_mock/fault", &fault.to_json())
    }

    /// Switches the continuation mode through `POST /_mock/continuation`.
    pub fn set_continuation(&self, mode: Continuation) -> Result<(), SuiteError> {
        self.control("continuation", "/_mock/continuation", &mode.to_json())
    }

    fn control(&self, what: &str, path: &str, body: &str) -> Result<(), SuiteError> {
        let failed = |why: String| {
            SuiteError::Mock(format!("cannot set {what} on mock '{}': {why}", self.name))
        };
        let mut client = Client::connect(self.control).map_err(|e| failed(e.to_string()))?;
        client
            .set_read_timeout(Duration::from_secs(10))
            .map_err(|e| failed(e.to_string()))?;
        let response = client
            .request(
                "POST",
                path,
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .map_err(|e| failed(e.to_string()))?;
        if response.status != 200 {
            return Err(failed(format!(
                "status {}: {}",
                response.status,
                response.text()
            )));
        }
        Ok(())
    }

    /// Provider requests served since start (faulted ones included).
    pub fn requests(&self) -> u64 {
        self.handle.stats().requests
    }
}

/// Every mock of a scenario; dropping it stops them.
pub struct MockSet {
    pub mocks: Vec<Mock>,
}

impl MockSet {
    /// Starts `specs` on ephemeral ports, their threads pinned to `pin_core`.
    pub fn start(specs: &[MockSpec], pin_core: Option<usize>) -> Result<MockSet, SuiteError> {
        let mut set = MockSet { mocks: Vec::new() };
        for spec in specs {
            let config = MockConfig {
                name: spec.name.clone(),
                threads: spec.threads,
                stream_chunks: spec.stream_chunks,
                chunk_delay: spec.chunk_delay.0,
                latency: spec.latency.0,
                fault: spec.fault.clone(),
                continuation: spec.continuation,
                control: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                pin_core,
                ..MockConfig::default()
            };
            let handle = mock::start(config)
                .map_err(|e| SuiteError::Mock(format!("cannot start mock '{}': {e}", spec.name)))?;
            let control = handle.control_addr().ok_or_else(|| {
                SuiteError::Mock(format!("mock '{}' has no control listener", spec.name))
            })?;
            set.mocks.push(Mock {
                name: spec.name.clone(),
                handle,
                control,
            });
        }
        Ok(set)
    }

    pub fn get(&self, name: &str) -> Result<&Mock, SuiteError> {
        self.mocks
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| SuiteError::Mock(format!("no mock named '{name}'")))
    }

    /// (name, base URL) pairs for the gateway template.
    pub fn urls(&self) -> Vec<(String, String)> {
        self.mocks
            .iter()
            .map(|m| (m.name.clone(), m.handle.base_url()))
            .collect()
    }
}

impl Drop for MockSet {
    fn drop(&mut self) {
        for m in &self.mocks {
            m.handle.shutdown();
        }
    }
}
