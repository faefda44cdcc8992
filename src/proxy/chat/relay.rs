//! A committed stream: relaying it to the client, and continuing it on the next
//! targets when it breaks after the client saw part of the answer.

use super::attempt::AttemptResult;
use super::executor::TargetEnd;
use super::*;
use crate::config::Prefill;
use crate::health::PrefillKnown;
use crate::outcome::Outcome;
use crate::proxy::continuation::{self, Aligner, Style};
use crate::proxy::stream::{self, RelayPolicy, StreamEnd, StreamStats};
use crate::wire::Usage;

/// How a relayed stream starts for the client.
pub(super) enum Opening {
    /// A new client stream; `native`: its events are already in the client's shape.
    New { native: bool },
    /// It continues one the client already holds: its stats so far, how to
    /// rewrite chunks, and the aligner its text passes first.
    Continues(Box<Carried>),
}

/// Relays a committed stream from `pick`.
pub(super) async fn relay(
    req: &Request<'_>,
    pick: &mut Pick,
    held: stream::Held,
    ttfb: Duration,
    opening: Opening,
    reply: &mut Reply<'_>,
) -> std::io::Result<TargetEnd> {
    record::probe_committed(req, pick);
    let (mut stats, rewrite, aligner) = match opening {
        Opening::Continues(c) => (c.stats, Some(c.rewrite), Some(c.aligner)),
        Opening::New { native } => (open_stream(req, pick.route, native, reply), None, None),
    };
    let policy = req.policy(pick);
    let relay_policy = RelayPolicy {
        between_chunks: policy.timeouts.between_chunks,
        deadline: req.deadline,
        forward_usage: req.chat.client_wants_usage,
        rewrite,
        keep_text: policy
            .stream
            .continue_after_commit
            .then_some(req.routing.table.config.limits.max_stream_buffer_bytes),
        draining: &req.shard.draining,
    };
    let before = Before {
        dropped: stats.dropped_events,
        usage: stats.usage,
        overflowed: stats.text_overflowed,
        text: stats.text.len(),
    };
    // While this upstream is held for the client, no write to it may outlast the
    // request's deadline.
    reply.client.set_cap(req.deadline);
    let out = std::mem::take(reply.out);
    let (end, buf) =
        stream::relay(held, reply.client, out, &relay_policy, &mut stats, aligner).await;
    reply.client.clear_cap();
    *reply.out = buf;
    record_stream(req, pick, &end, ttfb, &stats, before, &relay_policy);
    match end {
        StreamEnd::ClientGone => Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "client went away mid-stream",
        )),
        StreamEnd::Completed => Ok(TargetEnd::Answered { status: 200 }),
        StreamEnd::Misaligned => Ok(TargetEnd::Misaligned { stats }),
        StreamEnd::Failed { class, reason } => broke(req, pick, class, reason, stats, reply).await,
    }
}

/// A continuation's state as it is relayed into the client's stream.
pub(super) struct Carried {
    stats: StreamStats,
    rewrite: stream::Rewrite,
    aligner: Aligner,
}

/// The response head of a new stream, and its time to first token. A stream in
/// a shape other than chat chunks (`native` for a dialect with its own) can be
/// relayed but not continued.
fn open_stream(
    req: &Request<'_>,
    route: usize,
    native: bool,
    reply: &mut Reply<'_>,
) -> StreamStats {
    reply
        .meta
        .write_stream_head(reply.out, 200, b"text/event-stream");
    let counters = &req.routing.routes[route].counters;
    let ttft = req.started.elapsed();
    counters.borrow_mut().ttft.observe(ttft);
    req.ttft.set(Some(ttft));
    let output = match native {
        true if reply.meta.dialect != Dialect::OpenAi => stream::Output::Native,
        _ => stream::Output::for_dialect(reply.meta.dialect, reply.meta.echo.as_deref()),
    };
    let chat_chunks = req.api == Api::ChatCompletions && !matches!(output, stream::Output::Native);
    StreamStats {
        output,
        unrepeatable: !chat_chunks,
        ..StreamStats::default()
    }
}

/// The stats of a stream when an attempt began relaying into it.
struct Before {
    dropped: u64,
    usage: Option<Usage>,
    overflowed: bool,
    text: usize,
}

/// Records a stream's outcome against its target: only this attempt's own tokens,
/// events dropped and buffer overflows. A stream cut before it reported usage
/// is charged an estimate (the provider bills what it generated): the prompt
/// and the text this attempt relayed.
fn record_stream(
    req: &Request<'_>,
    pick: &mut Pick,
    end: &StreamEnd,
    ttfb: Duration,
    stats: &StreamStats,
    before: Before,
    policy: &RelayPolicy<'_>,
) {
    if stats.text_overflowed && !before.overflowed {
        record::stream_overflow(req, pick.slot);
    }
    // A continuation that restarted answered as a model does: not a failure.
    let outcome = match end {
        StreamEnd::Failed { class, .. } => Outcome::Failure(*class),
        StreamEnd::Completed | StreamEnd::ClientGone | StreamEnd::Misaligned => Outcome::Success,
    };
    let own_usage = stats
        .usage
        .filter(|u| Some(*u) != before.usage)
        .map(|u| subtract(u, policy.rewrite.as_ref().and_then(|r| r.base_usage)))
        .or_else(|| cut_estimate(req, end, stats, before.text));
    record::outcome(req, pick, outcome, Some(ttfb), own_usage);
    let mut counters = req.routing.targets[pick.slot].counters.borrow_mut();
    counters.stream_events_dropped += stats.dropped_events - before.dropped;
}

/// What a stream cut before its usage report is estimated to have used.
fn cut_estimate(
    req: &Request<'_>,
    end: &StreamEnd,
    stats: &StreamStats,
    text_before: usize,
) -> Option<Usage> {
    if !matches!(end, StreamEnd::Failed { .. }) {
        return None;
    }
    let relayed = stats.text.get(text_before..).unwrap_or("");
    Some(Usage {
        prompt_tokens: crate::wire::usage::estimate_tokens_of_bytes(req.body.len()),
        completion_tokens: continuation::estimate_tokens(relayed),
    })
}

/// A committed stream failed: continue it on the next targets when the route
/// says so and it still can be, else end the client's stream with an error event.
async fn broke(
    req: &Request<'_>,
    pick: &Pick,
    class: FailureClass,
    reason: String,
    stats: StreamStats,
    reply: &mut Reply<'_>,
) -> std::io::Result<TargetEnd> {
    let label = req.label(pick.slot);
    crate::event!(
        crate::log::Level::Warn,
        "stream failed after commit",
        id = req.request_id,
        target = label,
        class = class.as_str(),
        reason = reason
    );
    let continuable = req.policy(pick).stream.continue_after_commit
        && !stats.text_overflowed
        && !stats.unrepeatable
        && req.shard.draining.get().is_none();
    if continuable {
        return Ok(TargetEnd::StreamBroken { stats, reason });
    }
    let mut stats = stats;
    end_stream_with_error(&reason, &mut stats, reply).await?;
    Ok(TargetEnd::Answered { status: 200 })
}

/// Ends the client's stream with its dialect's error event, written by the
/// stream's own output (a translator numbers it on from the events it wrote).
async fn end_stream_with_error(
    reason: &str,
    stats: &mut StreamStats,
    reply: &mut Reply<'_>,
) -> std::io::Result<()> {
    let out = std::mem::take(reply.out);
    let (written, buf) = stream::end_with_error(reply.client, out, reason, &mut stats.output).await;
    *reply.out = buf;
    written
}

/// Continues a stream that broke after commit on the next targets of the chain:
/// the conversation plus the text already streamed goes to each in turn — as
/// prefill first where the target may take it, then in instruction style — until
/// one streams the rest, checked for alignment and spliced into the client's
/// stream. If none can, the client's stream ends with an error naming the
/// original failure.
pub(super) async fn continue_stream(
    req: &Request<'_>,
    route: usize,
    rest: &[usize],
    mut stats: StreamStats,
    original_reason: &str,
    reply: &mut Reply<'_>,
) -> std::io::Result<()> {
    let mut trail = Trail::default();
    'targets: for (position, &target) in rest.iter().enumerate() {
        let others = position + 1 < rest.len();
        for style in styles(req, route, target, &stats.text) {
            if Instant::now() >= req.deadline {
                break 'targets;
            }
            let sent = continuation::estimate_tokens(&stats.text);
            let Ok(body) = continuation::request_body(req.body, &stats.text, style, sent) else {
                break 'targets;
            };
            let Ok(chat) = ChatBody::parse(&body) else {
                break 'targets;
            };
            let Some(mut pick) = executor::admit(req, route, target, others, &mut trail) else {
                continue 'targets;
            };
            let outgoing = Outgoing {
                api: req.api,
                body: &body,
                chat: &chat,
                native: req.body_answers_natively,
            };
            let tried = continue_on(
                req,
                &mut pick,
                outgoing,
                style,
                stats,
                original_reason,
                reply,
            );
            match tried.await? {
                Continued::Done => return Ok(()),
                Continued::Refused(back) => stats = back,
                Continued::Passed(back) => {
                    stats = back;
                    continue 'targets;
                }
            }
        }
    }
    end_stream_with_error(original_reason, &mut stats, reply).await
}

/// The styles a continuation on `target` tries, in order: prefill first unless
/// the target is set to instruction style or known not to take prefill, or the
/// partial is too short for a prefill to be verified.
fn styles(req: &Request<'_>, route: usize, target: usize, partial: &str) -> Vec<Style> {
    let policy = &req.routing.table.routes[route].targets[target];
    let known = req.routing.table.prefill[policy.slot].get();
    if continuation::prefill_split(partial) == 0 {
        return vec![Style::Instruction];
    }
    match (policy.prefill, known) {
        (Prefill::Always, _) => vec![Style::Prefill],
        (Prefill::Never, _) | (Prefill::Auto, PrefillKnown::Unsupported) => {
            vec![Style::Instruction]
        }
        (Prefill::Auto, _) => vec![Style::Prefill, Style::Instruction],
    }
}

/// How one continuation attempt ended.
enum Continued {
    /// The client's stream is finished (completed, or ended with an error).
    Done,
    /// This style did not work here (prefill refused, or the answer did not line
    /// up): try the next style on the same target.
    Refused(StreamStats),
    /// Not continued here; try the next target with these stats.
    Passed(StreamStats),
}

/// One continuation attempt on `pick` in `style`: relayed into the client's
/// stream once aligned, else recorded and passed over. What it shows about the
/// target's prefill is remembered gateway-wide.
async fn continue_on(
    req: &Request<'_>,
    pick: &mut Pick,
    outgoing: Outgoing<'_>,
    style: Style,
    mut stats: StreamStats,
    original_reason: &str,
    reply: &mut Reply<'_>,
) -> std::io::Result<Continued> {
    record::started(req, pick, false);
    reply.meta.attempts += 1;
    let started = Instant::now();
    let result = attempt::for_client(req, pick, outgoing, reply.client, started)
        .await
        .ok_or_else(client_gone)?;
    let memory = &req.routing.table.prefill[pick.slot];
    let learn = |known| {
        if style == Style::Prefill {
            memory.set(known);
        }
    };
    let mut ignored = Trail::default();
    match result {
        AttemptResult::Untranslatable(reason) => {
            record::untranslatable(req, pick, &reason, &mut reply.meta, &mut ignored);
        }
        AttemptResult::Stream { held, ttfb, .. } => {
            let from = reply.meta.target.as_deref().unwrap_or("-");
            let carried = carry(req, pick, &mut stats, (style, from), original_reason);
            let end = relay(
                req,
                pick,
                *held,
                ttfb,
                Opening::Continues(Box::new(carried)),
                reply,
            )
            .await?;
            let (continued, known) = continued_by(end);
            if let Some(known) = known {
                learn(known);
            }
            return Ok(continued);
        }
        // A non-streamed answer cannot be spliced into the stream.
        AttemptResult::Complete { .. } => {
            record::outcome(
                req,
                pick,
                Outcome::Failure(FailureClass::Server),
                None,
                None,
            );
        }
        AttemptResult::Failed(failed) => {
            record::failed(req, pick, &failed, started, &mut ignored);
            let refused = failed.answer.as_ref().is_some_and(|a| {
                style == Style::Prefill && continuation::rejects_prefill(a.status, &a.body)
            });
            if refused {
                learn(PrefillKnown::Unsupported);
                return Ok(Continued::Refused(stats));
            }
        }
    }
    Ok(Continued::Passed(stats))
}

/// How a relayed continuation ended, and what it showed about the style.
fn continued_by(end: TargetEnd) -> (Continued, Option<PrefillKnown>) {
    match end {
        TargetEnd::Misaligned { stats } => {
            (Continued::Refused(stats), Some(PrefillKnown::Unsupported))
        }
        TargetEnd::StreamBroken { stats, .. } => (Continued::Passed(stats), None),
        _ => (Continued::Done, Some(PrefillKnown::Capable)),
    }
}

/// What relaying a continuation needs: the client's stream so far, chunks
/// rewritten to its id and model with a marker naming who continued, and the
/// aligner over the partial text.
/// `(style, from)`: how it was asked for, and the target whose stream broke.
fn carry(
    req: &Request<'_>,
    pick: &Pick,
    stats: &mut StreamStats,
    (style, from): (Style, &str),
    original_reason: &str,
) -> Carried {
    let label = req.label(pick.slot);
    let rewrite = stream::Rewrite {
        id: stats.id.clone().unwrap_or_default(),
        model: stats.model.clone().unwrap_or_default(),
        marker: serde_json::json!({
            "continued": true,
            "continued_by": label,
            "continued_from": from,
            "after": original_reason,
            "style": match style { Style::Prefill => "prefill", Style::Instruction => "instruction" },
        }),
        base_usage: stats.usage,
    };
    let aligner = Aligner::new(&stats.text, style);
    Carried {
        stats: std::mem::take(stats),
        rewrite,
        aligner,
    }
}

fn subtract(total: Usage, base: Option<Usage>) -> Usage {
    let base = base.unwrap_or_default();
    Usage {
        prompt_tokens: total.prompt_tokens.saturating_sub(base.prompt_tokens),
        completion_tokens: total
            .completion_tokens
            .saturating_sub(base.completion_tokens),
    }
}
