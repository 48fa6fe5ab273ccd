//! The JSON of OpenAI-compatible chat completions, as sent and received.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user (or the agent's caller).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant (model) message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Tokens counted by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (all messages sent).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

/// The request body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub struct ChatBody<'a> {
    /// Model name.
    pub model: &'a str,
    /// The conversation.
    pub messages: &'a [ChatMessage],
    /// Stream the answer as server-sent events.
    pub stream: bool,
    /// Ask for usage in the last streamed chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

/// `stream_options` of a streamed request.
#[derive(Debug, Serialize)]
pub struct StreamOptions {
    /// Send token usage in a last chunk.
    pub include_usage: bool,
}

/// A non-streamed response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatReply {
    /// Model that answered.
    #[serde(default)]
    pub model: String,
    /// Candidate answers; the first is used.
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// One candidate of a non-streamed response.
#[derive(Debug, Serialize, Deserialize)]
pub struct Choice {
    /// The answer.
    pub message: ChatMessage,
    /// Why generation stopped (`stop`, `length`, ...).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One event of a streamed response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Candidate deltas; the first is used.
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Token counts (in the last chunk, when asked for).
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// One candidate of a streamed event.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// New text.
    pub delta: Delta,
    /// Why generation stopped, in the last event.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The new text of a streamed event.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Delta {
    /// The next token(s), if any.
    #[serde(default)]
    pub content: Option<String>,
}

/// The body of an error response: `{"error": {"message": ...}}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The detail of an error response.
#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    /// What the server says went wrong.
    pub message: String,
}
