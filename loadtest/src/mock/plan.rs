//! What each provider route answers when no fault interferes: a whole JSON body or
//! a stream, in the dialect the route speaks.

use super::answer::{Answer, Continuation};
use super::anthropic;
use super::azure::Refusal;
use super::bedrock;
use super::completions;
use super::dialect::{self, BodyError, Dialect, ErrorHeader};
use super::gemini;
use super::openai;
use super::request::{self, GeminiMethod, Route};
use super::responses;
use super::state::{Settings, Shared};
use super::stream::StreamPlan;

/// The fault-free answer to a provider request.
pub(crate) enum Plan {
    /// A JSON body with this status (and maybe a header naming the error) is in
    /// the output buffer.
    Whole {
        status: u16,
        header: ErrorHeader,
    },
    Stream(StreamPlan),
}

/// A provider request, read in full.
pub(crate) struct Incoming<'a> {
    pub route: Route,
    /// Path and query.
    pub target: &'a str,
    /// An `api-key` header is present.
    pub api_key: bool,
    pub body: &'a [u8],
    /// The request's sequence number (used in response ids).
    pub id: u64,
    /// The mock's continuation mode when the request arrived.
    pub continuation: Continuation,
    /// The mock's shared state (the Responses API ids it issued); `None` in unit
    /// tests, where every `previous_response_id` is unknown.
    pub shared: Option<&'a Shared>,
}

const OK: Plan = Plan::Whole {
    status: 200,
    header: None,
};

/// Builds the fault-free answer to `req`: a JSON body in `out`, or a stream plan.
pub(crate) fn plan(settings: &Settings, req: &Incoming<'_>, out: &mut Vec<u8>) -> Plan {
    out.clear();
    let (words, name) = (settings.stream_chunks, settings.name.as_str());
    let path_model = request::dialect_target(req.target).map_or("", |(_, model)| model);
    let answered = match req.route {
        Route::Chat => Answer::from_request(req.body, words, req.id, req.continuation)
            .map(|answer| openai_answer(answer, out, settings)),
        Route::Embeddings => openai::write_embeddings(out, req.body)
            .map_err(BodyError::from)
            .map(|()| OK),
        Route::Models => {
            openai::write_models(out, name, settings.created);
            Ok(OK)
        }
        Route::Messages => {
            anthropic::Reply::read(req.body, words, req.id, req.continuation).map(|reply| {
                if reply.answer.stream {
                    return Plan::Stream(StreamPlan::Anthropic(reply));
                }
                reply.write_message(out, name);
                OK
            })
        }
        Route::Gemini(method) => gemini_answer(method, req, path_model, settings, out),
        Route::Converse { stream } => {
            let model = bedrock::decode_model_id(path_model);
            bedrock::read(req.body, &model, words, req.id).map(|answer| {
                if stream {
                    return Plan::Stream(StreamPlan::Bedrock(answer));
                }
                bedrock::write_response(out, &answer, name);
                OK
            })
        }
        Route::AzureChat => return azure_answer(req, path_model, settings, out),
        Route::Responses { azure } => return responses_answer(req, azure, settings, out),
        Route::Completions { azure } => {
            return completions_answer(req, azure.then_some(path_model), settings, out)
        }
        Route::CountTokens => anthropic::write_count_tokens(out, req.body).map(|()| OK),
        Route::MethodNotAllowed => return not_here(out, 405, "method not allowed"),
        _ => return not_here(out, 404, "unknown path"),
    };
    let dialect = req.route.dialect().unwrap_or(Dialect::OpenAi);
    answered.unwrap_or_else(|e| body_error(dialect, e, out, name))
}

/// The 400 a body that cannot be answered gets, in `dialect`'s shape.
fn body_error(dialect: Dialect, e: BodyError, out: &mut Vec<u8>, name: &str) -> Plan {
    out.clear();
    let header = match e {
        BodyError::Prefill => dialect::write_prefill_rejected(dialect, out, name),
        e => dialect::write_error(dialect, out, 400, Some(&e.to_string()), name),
    };
    Plan::Whole {
        status: 400,
        header,
    }
}

fn refused(refusal: Refusal, out: &mut Vec<u8>) -> Plan {
    out.clear();
    refusal.write(out);
    Plan::Whole {
        status: refusal.status(),
        header: None,
    }
}

/// The Responses API: Azure's key and content filter rules (no api-version: the
/// v1 API needs none), the `previous_response_id` check, then the answer. Only
/// responses stored (`store` not false) can be named by a later request.
fn responses_answer(
    req: &Incoming<'_>,
    azure: bool,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Plan {
    let dialect = if azure {
        Dialect::Azure
    } else {
        Dialect::OpenAi
    };
    if let (true, Err(refusal)) = (azure, Refusal::check(req.api_key, Some("v1"))) {
        return refused(refusal, out);
    }
    let tag = req.shared.map_or(0, |s| s.tag);
    let words = settings.stream_chunks;
    let reply = match responses::Reply::read(req.body, words, req.id, req.continuation, tag) {
        Ok(reply) => reply,
        Err(e) => return body_error(dialect, e, out, &settings.name),
    };
    if let (true, Err(refusal)) = (azure, Refusal::filter(reply.last_user.as_deref())) {
        return refused(refusal, out);
    }
    if let Some(previous) = &reply.previous {
        let issued = responses::Reply::parse_id(previous, tag)
            .is_some_and(|n| req.shared.is_some_and(|s| s.issued_response(n)));
        if !issued {
            responses::write_unknown_previous(out, previous);
            return Plan::Whole {
                status: 400,
                header: None,
            };
        }
    }
    if let (true, Some(shared)) = (reply.store, req.shared) {
        shared.issue_response(req.id);
    }
    if reply.answer.stream {
        return Plan::Stream(StreamPlan::Responses(reply));
    }
    reply.push_response(out, &settings.name, settings.created, true);
    OK
}

/// Legacy completions; for Azure (`deployment` set) the key, api-version and
/// content filter rules of the chat route, with the deployment as the model.
fn completions_answer(
    req: &Incoming<'_>,
    deployment: Option<&str>,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Plan {
    let dialect = if deployment.is_some() {
        Dialect::Azure
    } else {
        Dialect::OpenAi
    };
    if deployment.is_some() {
        let api_version = request::query_param(req.target, "api-version");
        if let Err(refusal) = Refusal::check(req.api_key, api_version) {
            return refused(refusal, out);
        }
    }
    let mut completion = match completions::read(req.body, settings.stream_chunks, req.id) {
        Ok(completion) => completion,
        Err(e) => return body_error(dialect, e, out, &settings.name),
    };
    if let Some(deployment) = deployment {
        if let Err(refusal) = Refusal::filter(Some(&completion.prompt)) {
            return refused(refusal, out);
        }
        completion.answer.model = deployment.to_string();
    }
    if completion.answer.stream {
        return Plan::Stream(StreamPlan::Completions(completion.answer));
    }
    completions::write_whole(out, &completion.answer, &settings.name, settings.created);
    OK
}

fn openai_answer(answer: Answer, out: &mut Vec<u8>, settings: &Settings) -> Plan {
    if answer.stream {
        return Plan::Stream(StreamPlan::OpenAi(answer));
    }
    answer.write_completion(out, &settings.name, settings.created);
    OK
}

fn gemini_answer(
    method: GeminiMethod,
    req: &Incoming<'_>,
    model: &str,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Result<Plan, BodyError> {
    let batch = match method {
        GeminiMethod::Embed => false,
        GeminiMethod::BatchEmbed => true,
        GeminiMethod::Generate | GeminiMethod::Stream => {
            let mut reply = gemini::Reply::read(req.body, model, settings.stream_chunks, req.id)?;
            if method == GeminiMethod::Stream {
                reply.sse = request::query_param(req.target, "alt") == Some("sse");
                return Ok(Plan::Stream(StreamPlan::Gemini(reply)));
            }
            reply.write_response(out, &settings.name);
            return Ok(OK);
        }
    };
    gemini::write_embeddings(out, req.body, batch).map(|()| OK)
}

/// Azure: key and api-version checks, the content filter rule, then the OpenAI
/// answer with the deployment as the model.
fn azure_answer(
    req: &Incoming<'_>,
    deployment: &str,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Plan {
    let api_version = request::query_param(req.target, "api-version");
    let chat = Refusal::check(req.api_key, api_version)
        .map(|()| openai::read_chat(req.body, settings.stream_chunks, req.id, req.continuation));
    let chat = match chat {
        Ok(Ok(chat)) => Refusal::filter(chat.last_user.as_deref()).map(|()| chat),
        Ok(Err(BodyError::Prefill)) => {
            dialect::write_prefill_rejected(Dialect::Azure, out, &settings.name);
            return Plan::Whole {
                status: 400,
                header: None,
            };
        }
        Ok(Err(e)) => {
            openai::write_error(out, &e.to_string(), "invalid_request_error");
            return Plan::Whole {
                status: 400,
                header: None,
            };
        }
        Err(refusal) => Err(refusal),
    };
    match chat {
        Ok(mut chat) => {
            chat.answer.model = deployment.to_string();
            openai_answer(chat.answer, out, settings)
        }
        Err(refusal) => {
            refusal.write(out);
            Plan::Whole {
                status: refusal.status(),
                header: None,
            }
        }
    }
}

fn not_here(out: &mut Vec<u8>, status: u16, message: &str) -> Plan {
    openai::write_error(out, message, "invalid_request_error");
    Plan::Whole {
        status,
        header: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings() -> Settings {
        Settings {
            name: "m".into(),
            stream_chunks: 3,
            chunk_delay: Duration::ZERO,
            latency: Duration::ZERO,
            created: 1,
        }
    }

    fn answer(route: Route, target: &str, body: &str, mode: Continuation) -> (u16, String) {
        let req = Incoming {
            route,
            target,
            api_key: true,
            body: body.as_bytes(),
            id: 1,
            continuation: mode,
            shared: None,
        };
        let mut out = Vec::new();
        match plan(&settings(), &req, &mut out) {
            Plan::Whole { status, .. } => (status, String::from_utf8(out).expect("utf8")),
            Plan::Stream(_) => panic!("a whole answer"),
        }
    }

    #[test]
    fn reject_prefill_answers_the_providers_error() {
        let chat = r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Hello from a: w0 "}]}"#;
        let azure = "/openai/deployments/d/chat/completions?api-version=1";
        for (route, target) in [
            (Route::Chat, "/v1/chat/completions"),
            (Route::AzureChat, azure),
        ] {
            assert_eq!(
                answer(route, target, chat, Continuation::RejectPrefill),
                (400, dialect::OPENAI_PREFILL_REJECTED.to_string())
            );
        }
        assert_eq!(
            dialect::OPENAI_PREFILL_REJECTED,
            r#"{"error":{"message":"Assistant message prefill is not supported: the final message must be a user or tool message.","type":"invalid_request_error","param":"messages","code":"invalid_request_error"}}"#
        );
        let messages = r#"{"max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Hello from a: w0 "}]}"#;
        assert_eq!(
            answer(
                Route::Messages,
                "/v1/messages",
                messages,
                Continuation::RejectPrefill
            ),
            (400, dialect::ANTHROPIC_PREFILL_REJECTED.to_string())
        );
        assert_eq!(
            dialect::ANTHROPIC_PREFILL_REJECTED,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"This model does not support assistant message prefill. The conversation must end with a user message."}}"#
        );
        // The other modes, and the other dialects, continue the prefill.
        let (status, body) = answer(
            Route::Chat,
            "/v1/chat/completions",
            chat,
            Continuation::Honest,
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            (status, v["choices"][0]["message"]["content"].as_str()),
            (200, Some("w1 w2 "))
        );
        let gemini = r#"{"contents":[{"role":"user","parts":[{"text":"q"}]},{"role":"model","parts":[{"text":"w0 "}]}]}"#;
        let (status, _) = answer(
            Route::Gemini(GeminiMethod::Generate),
            "/v1beta/models/g:generateContent",
            gemini,
            Continuation::RejectPrefill,
        );
        assert_eq!(status, 200);
    }
}
