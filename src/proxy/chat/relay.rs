//! A committed stream: relaying it to the client, and continuing it on the next
//! targets when it breaks after the client saw part of the answer.

use super::*;

impl Call<'_> {
    /// Relays a committed stream. `carried` is set when this stream continues one
    /// the client already holds (its stats so far and how to rewrite chunks).
    /// `(target, slot)`: the route target streaming it and its health slot.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay(
        &mut self,
        route_index: usize,
        route: &Route,
        (target_index, slot): (usize, usize),
        held: stream::Held,
        ttfb: Duration,
        carried: Option<(StreamStats, stream::Rewrite)>,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<TargetEnd> {
        self.settle_probe_at_commit(slot);
        let (mut stats, rewrite) = match carried {
            Some((stats, rewrite)) => (stats, Some(rewrite)),
            None => {
                self.meta.write_stream_head(out, 200, b"text/event-stream");
                if let Some(counters) = self
                    .shard
                    .metrics
                    .borrow_mut()
                    .route(&self.table, route_index)
                {
                    counters.ttft.observe(self.started.elapsed());
                }
                let stats = StreamStats {
                    output: stream::Output::for_dialect(self.meta.dialect),
                    ..StreamStats::default()
                };
                (stats, None)
            }
        };
        // The target's own (resolved) stall limit, as its attempt used before commit.
        let between_chunks = route
            .targets
            .get(target_index)
            .map_or(route.timeouts.between_chunks, |t| t.timeouts.between_chunks);
        let policy = RelayPolicy {
            between_chunks,
            deadline: self.deadline,
            forward_usage: self.chat.client_wants_usage,
            rewrite,
            keep_text: route
                .stream
                .continue_after_commit
                .then_some(self.table.config.limits.max_stream_buffer_bytes),
            draining: &self.shard.draining,
        };
        let dropped_before = stats.dropped_events;
        let usage_before = stats.usage;
        let overflowed_before = stats.text_overflowed;
        // While this upstream is held for the client, no write to it may outlast the
        // request's deadline.
        client.set_cap(self.deadline);
        let (end, buf) =
            stream::relay(held, client, std::mem::take(out), &policy, &mut stats).await;
        client.clear_cap();
        *out = buf;
        if stats.text_overflowed && !overflowed_before {
            self.count_stream_overflow(slot);
        }
        let outcome = match &end {
            StreamEnd::Failed { class, .. } => Outcome::Failure(*class),
            StreamEnd::Completed | StreamEnd::ClientGone => Outcome::Success,
        };
        // Count only this attempt's own tokens against its target.
        let own_usage = stats
            .usage
            .filter(|u| Some(*u) != usage_before)
            .map(|u| subtract(u, policy.rewrite.as_ref().and_then(|r| r.base_usage)));
        self.record(slot, outcome, Some(ttfb), own_usage);
        if let Some(counters) = self.shard.metrics.borrow_mut().target(&self.table, slot) {
            counters.stream_events_dropped += stats.dropped_events - dropped_before;
        }
        match end {
            StreamEnd::ClientGone => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client went away mid-stream",
            )),
            StreamEnd::Completed => Ok(TargetEnd::Answered { status: 200 }),
            StreamEnd::Failed { class, reason } => {
                let label = self.table.slots[slot].label.clone();
                crate::event!(
                    crate::log::Level::Warn,
                    "stream failed after commit",
                    id = self.meta.request_id,
                    target = label,
                    class = class.as_str(),
                    reason = reason
                );
                self.attempts.push(AttemptLog {
                    target: label,
                    class,
                    status: Some(200),
                    elapsed: self.started.elapsed(),
                    detail: reason.clone(),
                });
                let continuable = route.stream.continue_after_commit
                    && !stats.text_overflowed
                    && self.shard.draining.get().is_none();
                if continuable {
                    return Ok(TargetEnd::StreamBroken { stats, reason });
                }
                self.end_stream_with_error(&reason, client, out).await?;
                Ok(TargetEnd::Answered { status: 200 })
            }
        }
    }

    /// A probe whose stream committed (a 200 with content) has shown the target
    /// answers: close the breaker now rather than when the stream ends, which may be
    /// minutes later, so recovery does not wait on one long answer. The stream's own
    /// outcome is still recorded when it ends, as an ordinary request.
    fn settle_probe_at_commit(&mut self, slot: usize) {
        if !self.take_probe(slot) {
            return;
        }
        let now = Instant::now();
        let transition = self
            .shard
            .with_health(&self.table, slot, |h| h.probe_succeeded(now))
            .flatten();
        self.note_transition(slot, transition);
    }

    pub(super) fn count_stream_overflow(&self, slot: usize) {
        if let Some(counters) = self.shard.metrics.borrow_mut().target(&self.table, slot) {
            counters.stream_buffer_overflows += 1;
        }
    }

    pub(super) async fn end_stream_with_error(
        &mut self,
        reason: &str,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let (written, buf) =
            stream::end_with_error(client, std::mem::take(out), reason, self.meta.dialect).await;
        *out = buf;
        written
    }

    /// Continues a stream that broke after commit on the next targets of the chain:
    /// the conversation plus the text already streamed goes to each in turn until
    /// one streams the rest, spliced into the client's stream. If none can, the
    /// client's stream ends with an error naming the original failure.
    pub(super) async fn continue_stream(
        &mut self,
        route_index: usize,
        rest: &[usize],
        mut stats: StreamStats,
        original_reason: &str,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let table = self.table.clone();
        let route = &table.config.routes[route_index];
        let slots = &table.route_slots[route_index];
        for &target_index in rest {
            let slot = slots[target_index];
            let now = Instant::now();
            if now >= self.deadline {
                break;
            }
            let target = &route.targets[target_index];
            let prefill = target.prefill.unwrap_or_else(|| {
                table.providers[target.provider]
                    .prepared
                    .adapter
                    .accepts_prefill()
            });
            let Some(body) =
                crate::proxy::continuation::request_body(self.body, &stats.text, prefill)
            else {
                break;
            };
            let Ok(chat) = ChatBody::parse(&body) else {
                break;
            };
            if let Admission::Reject { .. } = self.admit(slot, now) {
                continue;
            }
            self.continuation = Some((body, chat));
            self.meta.attempts += 1;
            self.shard.with_health(&table, slot, |h| h.start());
            let started = Instant::now();
            let Some(result) = self
                .attempt_for_client(client, route, target_index, slot, started)
                .await
            else {
                return Err(client_gone());
            };
            self.continuation = None;
            let label = table.slots[slot].label.clone();
            match result {
                AttemptResult::Untranslatable(reason) => {
                    self.skip_untranslatable(slot, &label, &reason)
                }
                AttemptResult::Stream { held, ttfb } => {
                    let rewrite = stream::Rewrite {
                        id: stats.id.clone().unwrap_or_default(),
                        model: stats.model.clone().unwrap_or_default(),
                        marker: serde_json::json!({ "continued": true, "continued_by": label, "after": original_reason }),
                        base_usage: stats.usage,
                    };
                    let carried = Some((std::mem::take(&mut stats), rewrite));
                    match self
                        .relay(
                            route_index,
                            route,
                            (target_index, slot),
                            *held,
                            ttfb,
                            carried,
                            client,
                            out,
                        )
                        .await?
                    {
                        TargetEnd::StreamBroken { stats: more, .. } => stats = more,
                        _ => return Ok(()),
                    }
                }
                AttemptResult::Complete { .. } => {
                    // A non-streamed answer cannot be spliced into the stream.
                    self.record(slot, Outcome::Failure(FailureClass::Server), None, None);
                }
                AttemptResult::Failed {
                    failure, reason, ..
                } => {
                    self.record(slot, Outcome::Failure(failure.class), None, None);
                    self.log_attempt(&label, &failure, started, &reason);
                }
            }
        }
        self.end_stream_with_error(original_reason, client, out)
            .await
    }
}

pub(super) fn subtract(total: Usage, base: Option<Usage>) -> Usage {
    let base = base.unwrap_or_default();
    Usage {
        prompt_tokens: total.prompt_tokens.saturating_sub(base.prompt_tokens),
        completion_tokens: total
            .completion_tokens
            .saturating_sub(base.completion_tokens),
    }
}
