//! One blocking connection to Redis for the control-plane thread, which never
//! blocks longer than its deadlines and never hammers a Redis that is gone.
//!
//! Every call is bounded: the connect by `connect_timeout`, each read and write
//! by `io_timeout`. A call that times out or fails on I/O drops the connection
//! (a late reply would be read as the next call's answer) and counts a failure;
//! the next connect waits out a backoff of 50 ms doubling to 2 s, so Redis gone
//! costs at most one connect attempt per interval. After `trip_after`
//! consecutive failures the breaker is open ([`LinkState::up`] false): that is
//! what the fleet features will read as "Redis down, fall back to node-local".
//! Any call inside a backoff interval fails at once with [`LinkError::Down`]
//! without touching the network. A reply that is a Redis error (a wrong type, a
//! bad argument) is the caller's [`LinkError::Protocol`] and says nothing bad
//! about the link: the server answered.
//!
//! The Redis side of a [`crate::limits::lease::Ledger`] lives here too:
//! [`RedisLink::eval_lease`] and [`RedisLink::force`], two Lua scripts loaded once
//! (SCRIPT LOAD), called by hash (EVALSHA) and reloaded when a restarted Redis
//! has forgotten them (NOSCRIPT).

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use redis::{Cmd, ConnectionAddr, ConnectionInfo, ConnectionLike, RedisConnectionInfo, Value};

/// Deadlines, breaker and backoff of a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Bounds the TCP (and TLS) connect, AUTH and SELECT together.
    pub connect_timeout: Duration,
    /// Bounds each read and each write of a call.
    pub io_timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub trip_after: u32,
    /// The first backoff interval, doubled at each further failure...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            connect_timeout: Duration::from_millis(500),
            io_timeout: Duration::from_millis(250),
            trip_after: 3,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Why a call gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not attempted: the link is waiting out its backoff (with the breaker
    /// open once failures reached `trip_after`); nothing touched the network.
    #[error("redis is down: no attempt before the backoff ends")]
    Down { until: Instant },
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis i/o error: {0}")]
    Io(String),
    #[error("redis protocol error: {0}")]
    Protocol(String),
    #[error("redis refused the credentials: {0}")]
    Auth(String),
}

/// What `/admin/cluster` shows of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// The breaker is closed (fewer than `trip_after` consecutive failures).
    pub up: bool,
    pub connected: bool,
    pub last_ok: Option<SystemTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// Connects tried, successful or not.
    pub connect_attempts: u64,
}

/// A parsed `redis://` or `rediss://` URL. Debug and Display hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub user: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("a redis URL starts with redis:// or rediss://")]
    Scheme,
    #[error("the redis URL has no host")]
    Host,
    #[error("the redis URL's port is not a number from 1 to 65535")]
    Port,
    #[error("the redis URL's path is not a database number (/0, /1, ...)")]
    Db,
    #[error("the redis URL's credentials are user:password@ or :password@ (percent-encoded)")]
    Credentials,
    #[error("query parameters in a redis URL are not supported")]
    Query,
}

impl LinkUrl {
    /// Parses `redis[s]://[user:password@]host[:port][/db]` (port 6379, db 0
    /// when left out); user and password are percent-decoded.
    pub fn parse(url: &str) -> Result<LinkUrl, UrlError> {
        let (tls, rest) = match (url.strip_prefix("rediss://"), url.strip_prefix("redis://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(UrlError::Scheme),
        };
        if rest.contains('?') {
            return Err(UrlError::Query);
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((credentials, hostport)) => (Some(credentials), hostport),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            Some(credentials) => parse_credentials(credentials)?,
            None => (None, None),
        };
        let (host, port) = parse_host_port(hostport)?;
        Ok(LinkUrl {
            tls,
            host,
            port,
            db: parse_db(path)?,
            user,
            password,
        })
    }

    fn connection_info(&self) -> ConnectionInfo {
        let addr = match self.tls {
            true => ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            },
            false => ConnectionAddr::Tcp(self.host.clone(), self.port),
        };
        ConnectionInfo {
            addr,
            redis: RedisConnectionInfo {
                db: self.db,
                username: self.user.clone(),
                password: self.password.clone(),
                ..RedisConnectionInfo::default()
            },
        }
    }
}

fn parse_credentials(credentials: &str) -> Result<(Option<String>, Option<String>), UrlError> {
    let (user, password) = credentials.split_once(':').ok_or(UrlError::Credentials)?;
    let user = percent_decode(user).ok_or(UrlError::Credentials)?;
    let password = percent_decode(password).ok_or(UrlError::Credentials)?;
    Ok((
        Some(user).filter(|u| !u.is_empty()),
        Some(password).filter(|p| !p.is_empty()),
    ))
}

fn parse_host_port(hostport: &str) -> Result<(String, u16), UrlError> {
    // An IPv6 literal is bracketed: [::1]:6379.
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or(UrlError::Host)?;
            match after {
                "" => (host, None),
                after => (host, Some(after.strip_prefix(':').ok_or(UrlError::Port)?)),
            }
        }
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    if host.is_empty() {
        return Err(UrlError::Host);
    }
    let port = match port {
        None => 6379,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(UrlError::Port),
        },
    };
    Ok((host.to_string(), port))
}

fn parse_db(path: &str) -> Result<i64, UrlError> {
    if path.is_empty() {
        return Ok(0);
    }
    if !path.bytes().all(|b| b.is_ascii_digit()) || path.len() > 9 {
        return Err(UrlError::Db);
    }
    path.parse().map_err(|_| UrlError::Db)
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = text.get(i + 1..i + 3)?;
        out.push(u8::from_str_radix(hex, 16).ok()?);
        i += 3;
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for LinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        match (&self.user, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (Some(user), None) => write!(f, "{user}:@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (None, None) => {}
        }
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}/{}", self.host, self.port, self.db),
            false => write!(f, "{}:{}/{}", self.host, self.port, self.db),
        }
    }
}

impl fmt::Debug for LinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkUrl({self})")
    }
}

/// The wait before the next connect after `failures` consecutive failures:
/// nothing after none, then `min` doubling at each failure up to `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(30);
    min.saturating_mul(1u32 << doublings).min(max)
}

/// Grants up to ARGV[1] units of KEYS[1] capped at ARGV[2] per window, the key
/// expiring at ARGV[3] (unix ms, the window's end); returns the units granted.
const LEASE_SCRIPT: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local give = tonumber(ARGV[1])
local room = tonumber(ARGV[2]) - used
if room < give then give = room end
if give <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], give)
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return give
";

/// Counts ARGV[1] units in KEYS[1] whatever the limit, the key expiring at
/// ARGV[2] (unix ms); returns the new count.
const FORCE_SCRIPT: &str = r"
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return used
";

/// Holds ARGV[2] of a fleet-wide concurrency cap ARGV[3] for node ARGV[1]:
/// KEYS[1] maps each node to the slots it holds, KEYS[2] to when it last
/// asked (unix ms, ARGV[4]); a node silent for ARGV[5] ms is dropped, its
/// slots freed. Grants what the other nodes leave, at most ARGV[2]; returns
/// it. Both keys expire when the whole fleet has been silent a while.
const CONCURRENCY_SCRIPT: &str = r"
local node, want, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now, stale = tonumber(ARGV[4]), tonumber(ARGV[5])
local held = redis.call('HGETALL', KEYS[1])
local others = 0
for i = 1, #held, 2 do
  local other = held[i]
  if other ~= node then
    local seen = tonumber(redis.call('HGET', KEYS[2], other) or '0')
    if now - seen > stale then
      redis.call('HDEL', KEYS[1], other)
      redis.call('HDEL', KEYS[2], other)
    else
      others = others + tonumber(held[i + 1])
    end
  end
end
local give = math.max(0, math.min(want, cap - others))
redis.call('HSET', KEYS[1], node, give)
redis.call('HSET', KEYS[2], node, now)
redis.call('PEXPIRE', KEYS[1], stale * 4)
redis.call('PEXPIRE', KEYS[2], stale * 4)
return give
";

/// Adds ARGV[2] (signed) to the spend in KEYS[1], first setting a missing key
/// to ARGV[1] (the caller's last known total: a Redis that lost the key is
/// reseeded, not reset); expires it at ARGV[3] (unix ms, 0: never); returns
/// the total.
const SPEND_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
end
local total = redis.call('INCRBY', KEYS[1], ARGV[2])
if total < 0 then
  redis.call('SET', KEYS[1], 0)
  total = 0
end
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return total
";

#[derive(Clone, Copy)]
enum Script {
    Lease = 0,
    Force = 1,
    Concurrency = 2,
    Spend = 3,
}

const SCRIPTS: [&str; 4] = [LEASE_SCRIPT, FORCE_SCRIPT, CONCURRENCY_SCRIPT, SPEND_SCRIPT];

/// A Redis link for one control thread: see the module doc.
pub struct RedisLink {
    url: LinkUrl,
    info: ConnectionInfo,
    config: LinkConfig,
    conn: Option<redis::Connection>,
    /// No connect (and no call while disconnected) before this.
    retry_at: Option<Instant>,
    state: LinkState,
    /// The scripts' hashes as loaded into this Redis.
    shas: [Option<String>; 4],
    ever_connected: bool,
    /// A CA (PEM) trusted for `rediss://` instead of the webpki roots.
    ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.url)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url`; it connects on its first call.
    pub fn new(url: &str, config: LinkConfig) -> Result<RedisLink, UrlError> {
        let url = LinkUrl::parse(url)?;
        let floor = Duration::from_millis(1);
        let config = LinkConfig {
            connect_timeout: config.connect_timeout.max(floor),
            io_timeout: config.io_timeout.max(floor),
            trip_after: config.trip_after.max(1),
            backoff_min: config.backoff_min.max(floor),
            backoff_max: config.backoff_max.max(config.backoff_min),
        };
        Ok(RedisLink {
            info: url.connection_info(),
            url,
            config,
            conn: None,
            retry_at: None,
            state: LinkState {
                up: true,
                connected: false,
                last_ok: None,
                last_error: None,
                consecutive_failures: 0,
                reconnects: 0,
                connect_attempts: 0,
            },
            shas: [None, None, None, None],
            ever_connected: false,
            ca_pem: None,
        })
    }

    /// Trusts the CA certificates in `pem` for `rediss://` instead of the
    /// webpki roots (a Redis with a private CA); from the next connect.
    pub fn set_ca_pem(&mut self, pem: Vec<u8>) {
        self.ca_pem = Some(pem);
        self.conn = None;
        self.state.connected = false;
    }

    pub fn url(&self) -> &LinkUrl {
        &self.url
    }

    pub fn state(&self) -> &LinkState {
        &self.state
    }

    /// Runs `cmd`, connecting first when there is no connection.
    pub fn call(&mut self, cmd: &Cmd) -> Result<Value, LinkError> {
        self.ready(Instant::now())?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.failed(LinkError::Io("not connected".into())));
        };
        let result = conn.req_command(cmd).and_then(Value::extract_error);
        match result {
            Ok(value) => {
                self.succeeded();
                Ok(value)
            }
            Err(err) => Err(self.call_failed(&err)),
        }
    }

    /// Hands over a connection of its own (connecting first, within the
    /// backoff and breaker like a call), for a caller that keeps it in a mode
    /// the link's calls cannot share (SUBSCRIBE). Report its fate with
    /// [`RedisLink::confirmed`] and [`RedisLink::lost`], so the backoff and
    /// the breaker keep counting.
    pub fn dedicated(&mut self) -> Result<redis::Connection, LinkError> {
        self.ready(Instant::now())?;
        self.state.connected = false;
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => Err(self.failed(LinkError::Io("not connected".into()))),
        }
    }

    /// A dedicated connection answered (its SUBSCRIBE was confirmed).
    pub fn confirmed(&mut self) {
        self.state.connected = true;
        self.succeeded();
    }

    /// A dedicated connection failed: counted like a failed call.
    pub fn lost(&mut self, err: &redis::RedisError) -> LinkError {
        let error = classify(err, self.config.io_timeout);
        self.failed(error)
    }

    /// PING, answered.
    pub fn ping(&mut self) -> Result<(), LinkError> {
        self.call(&redis::cmd("PING")).map(|_| ())
    }

    /// GET `key` as a count (`None`: no such key).
    pub fn get_u64(&mut self, key: &str) -> Result<Option<u64>, LinkError> {
        let value = self.call(redis::cmd("GET").arg(key))?;
        redis::from_redis_value(&value).map_err(|e| LinkError::Protocol(e.to_string()))
    }

    /// The Redis side of [`crate::limits::lease::Ledger::grant`]: grants up to
    /// `want` units of the fleet-wide count `key` (one key per window), capped at
    /// `limit`, the key expiring at `window_end_ms` (unix ms); returns the units
    /// granted (0: the window's capacity is spent).
    pub fn eval_lease(
        &mut self,
        key: &str,
        want: u64,
        limit: u64,
        window_end_ms: u64,
    ) -> Result<u64, LinkError> {
        let args = [want, limit, window_end_ms].map(|a| a.to_string());
        let value = self.eval(Script::Lease, &[key], &args)?;
        redis::from_redis_value(&value).map_err(|e| LinkError::Protocol(e.to_string()))
    }

    /// The Redis side of [`crate::limits::lease::Ledger::force`]: counts `units`
    /// in `key` whatever the limit; returns the count after.
    pub fn force(&mut self, key: &str, units: u64, window_end_ms: u64) -> Result<u64, LinkError> {
        let args = [units, window_end_ms].map(|a| a.to_string());
        let value = self.eval(Script::Force, &[key], &args)?;
        redis::from_redis_value(&value).map_err(|e| LinkError::Protocol(e.to_string()))
    }

    /// Adds `delta` to the fleet's spend in `key` (seeding a missing key with
    /// `seed`), the key expiring at `expires_ms` (0: never); returns the total.
    pub fn spend(
        &mut self,
        key: &str,
        seed: u64,
        delta: i64,
        expires_ms: u64,
    ) -> Result<u64, LinkError> {
        let args = [seed.to_string(), delta.to_string(), expires_ms.to_string()];
        let value = self.eval(Script::Spend, &[key], &args)?;
        redis::from_redis_value(&value).map_err(|e| LinkError::Protocol(e.to_string()))
    }

    /// Asks to hold `want` slots of the fleet-wide concurrency cap `cap`
    /// counted in `key` (with `key:seen`), for `node`; a node silent for
    /// `stale` loses its slots. Returns the slots held now (what the others
    /// leave, at most `want`).
    pub fn hold_concurrency(
        &mut self,
        key: &str,
        node: &str,
        want: u32,
        cap: u32,
        stale: Duration,
    ) -> Result<u32, LinkError> {
        let now = super::unix_ms(SystemTime::now());
        let args = [
            node.to_string(),
            want.to_string(),
            cap.to_string(),
            now.to_string(),
            (stale.as_millis() as u64).max(1).to_string(),
        ];
        let seen = format!("{key}:seen");
        let value = self.eval(Script::Concurrency, &[key, &seen], &args)?;
        redis::from_redis_value(&value).map_err(|e| LinkError::Protocol(e.to_string()))
    }

    /// EVALSHA of `script`, loading it first when this link has not, and once
    /// more when Redis answers NOSCRIPT (restarted, or SCRIPT FLUSH).
    fn eval(&mut self, script: Script, keys: &[&str], args: &[String]) -> Result<Value, LinkError> {
        let sha = self.sha(script)?;
        match self.call(&evalsha(&sha, keys, args)) {
            Err(LinkError::Protocol(msg)) if msg.starts_with("NOSCRIPT") => {
                self.shas[script as usize] = None;
                let sha = self.sha(script)?;
                self.call(&evalsha(&sha, keys, args))
            }
            other => other,
        }
    }

    fn sha(&mut self, script: Script) -> Result<String, LinkError> {
        if let Some(sha) = &self.shas[script as usize] {
            return Ok(sha.clone());
        }
        let loaded = self.call(
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(SCRIPTS[script as usize]),
        )?;
        let sha: String =
            redis::from_redis_value(&loaded).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.shas[script as usize] = Some(sha.clone());
        Ok(sha)
    }

    /// Fails fast inside a backoff interval; connects when disconnected.
    fn ready(&mut self, now: Instant) -> Result<(), LinkError> {
        if let Some(until) = self.retry_at.filter(|until| now < *until) {
            return Err(LinkError::Down { until });
        }
        if self.conn.is_some() {
            return Ok(());
        }
        self.connect()
    }

    fn connect(&mut self) -> Result<(), LinkError> {
        self.state.connect_attempts += 1;
        let timeout = self.config.connect_timeout;
        let conn = self
            .client()
            .and_then(|client| client.get_connection_with_timeout(timeout))
            .and_then(|conn| {
                conn.set_read_timeout(Some(self.config.io_timeout))?;
                conn.set_write_timeout(Some(self.config.io_timeout))?;
                Ok(conn)
            });
        match conn {
            Ok(conn) => {
                if self.ever_connected {
                    self.state.reconnects += 1;
                }
                self.ever_connected = true;
                self.conn = Some(conn);
                self.state.connected = true;
                Ok(())
            }
            Err(err) => {
                let error = classify(&err, timeout);
                Err(self.failed(error))
            }
        }
    }

    fn client(&self) -> redis::RedisResult<redis::Client> {
        match (&self.ca_pem, self.url.tls) {
            (Some(pem), true) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                redis::Client::build_with_tls(self.info.clone(), certificates)
            }
            _ => redis::Client::open(self.info.clone()),
        }
    }

    /// A call's error: a Redis error reply leaves the link as it is (the server
    /// answered); anything else drops the connection and counts a failure.
    fn call_failed(&mut self, err: &redis::RedisError) -> LinkError {
        let error = classify(err, self.config.io_timeout);
        if err.code().is_some() && !matches!(error, LinkError::Auth(_)) {
            self.succeeded();
            return error;
        }
        self.failed(error)
    }

    fn succeeded(&mut self) {
        self.state.consecutive_failures = 0;
        self.state.up = true;
        self.state.last_ok = Some(SystemTime::now());
        self.retry_at = None;
    }

    fn failed(&mut self, error: LinkError) -> LinkError {
        self.conn = None;
        self.state.connected = false;
        self.state.consecutive_failures = self.state.consecutive_failures.saturating_add(1);
        self.state.up = self.state.consecutive_failures < self.config.trip_after;
        self.state.last_error = Some(error.to_string());
        let wait = backoff(
            self.state.consecutive_failures,
            self.config.backoff_min,
            self.config.backoff_max,
        );
        self.retry_at = Some(Instant::now() + wait);
        error
    }
}

fn evalsha(sha: &str, keys: &[&str], args: &[String]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(keys.len()).arg(keys).arg(args);
    cmd
}

/// Sorts a redis error into the link's kinds; `timeout` is the deadline that
/// applied, for the message.
fn classify(err: &redis::RedisError, timeout: Duration) -> LinkError {
    if err.is_timeout() {
        return LinkError::Timeout(timeout);
    }
    match (err.kind(), err.code()) {
        (redis::ErrorKind::AuthenticationFailed, _) => LinkError::Auth(err.to_string()),
        (_, Some("NOAUTH" | "WRONGPASS")) => LinkError::Auth(err.to_string()),
        (_, Some("NOSCRIPT")) => LinkError::Protocol(format!("NOSCRIPT {err}")),
        (_, Some(_)) => LinkError::Protocol(err.to_string()),
        _ if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() => {
            LinkError::Io(err.to_string())
        }
        _ => LinkError::Protocol(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> LinkUrl {
        LinkUrl::parse(text).expect(text)
    }

    #[test]
    fn plain_url_takes_defaults() {
        let u = url("redis://cache.internal");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.db),
            (false, "cache.internal", 6379, 0)
        );
        assert_eq!((u.user, u.password), (None, None));
    }

    #[test]
    fn full_url_parses_every_part() {
        let u = url("rediss://gw:s%40cr%3At@10.0.0.5:6380/3");
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port, u.db), ("10.0.0.5", 6380, 3));
        assert_eq!(u.user.as_deref(), Some("gw"));
        assert_eq!(u.password.as_deref(), Some("s@cr:t"));
    }

    #[test]
    fn password_only_and_ipv6() {
        let u = url("redis://:pw@[::1]:7000/");
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 7000, 0));
        assert_eq!((u.user, u.password.as_deref()), (None, Some("pw")));
        assert_eq!(url("redis://[::1]").port, 6379);
    }

    #[test]
    fn bad_urls_say_why() {
        let cases = [
            ("http://h:6379", UrlError::Scheme),
            ("redis://", UrlError::Host),
            ("redis://:6379", UrlError::Host),
            ("redis://h:0", UrlError::Port),
            ("redis://h:99999", UrlError::Port),
            ("redis://h:x", UrlError::Port),
            ("redis://h/x", UrlError::Db),
            ("redis://h/-1", UrlError::Db),
            ("redis://pw@h", UrlError::Credentials),
            ("redis://u:%zz@h", UrlError::Credentials),
            ("redis://h/0?timeout=1", UrlError::Query),
        ];
        for (text, want) in cases {
            assert_eq!(LinkUrl::parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let u = url("redis://admin:hunter2@h:1/2");
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("admin:***@h:1/2"), "{shown}");
        }
        let link = RedisLink::new("redis://admin:hunter2@h:1/2", LinkConfig::default());
        let shown = format!("{:?}", link.expect("parses"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn backoff_doubles_from_min_to_max() {
        let (min, max) = (Duration::from_millis(50), Duration::from_secs(2));
        let waits: Vec<u64> = (0..9)
            .map(|n| backoff(n, min, max).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }

    #[test]
    fn a_link_starts_up_and_unconnected() {
        let link = RedisLink::new("redis://127.0.0.1:1", LinkConfig::default()).expect("parses");
        let state = link.state();
        assert!(state.up && !state.connected);
        assert_eq!((state.connect_attempts, state.reconnects), (0, 0));
    }
}
