//! An agent with memory that talks to an OpenAI-compatible LLM.
//!
//! The agent is a worker that keeps the conversation so far and, for every
//! question it is asked, sends the whole conversation to the LLM and replies
//! with the answer. By default it talks to the embedded mock LLM (started on
//! this node's shard, on loopback); set `OPENAI_BASE_URL` (and
//! `OPENAI_API_KEY`, `OPENAI_MODEL`) to talk to a real endpoint instead.
//!
//! ```text
//! cargo run --example llm_agent
//! OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... cargo run --example llm_agent
//! ```

use std::time::Duration;

use myriad::llm::mock::MockLlm;
use myriad::llm::{ChatMessage, ChatRequest, LlmClient, LlmConfig};
use myriad::{BoxError, Context, Message, Node, NodeConfig, Worker};

#[path = "support/logging.rs"]
mod logging;

/// An agent: an LLM client and the conversation it remembers.
struct Assistant {
    llm: LlmClient,
    memory: Vec<ChatMessage>,
}

impl Worker for Assistant {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        self.memory.push(ChatMessage::user(msg.to_string()));
        let answer = self
            .llm
            .chat(&ChatRequest::new(self.memory.clone()))
            .await?;
        self.memory
            .push(ChatMessage::assistant(answer.content.clone()));
        let tokens = answer.usage.map_or(0, |u| u.total_tokens);
        ctx.reply(format!("{} [{tokens} tokens]", answer.content))?;
        Ok(())
    }
}

/// The LLM to use: `OPENAI_BASE_URL` if set, else a mock on this shard.
fn llm_config() -> Result<LlmConfig, BoxError> {
    if std::env::var_os("OPENAI_BASE_URL").is_some() {
        return Ok(LlmConfig::from_env());
    }
    let mock = MockLlm {
        latency: Duration::from_millis(50),
        sigma: 0.3,
        tokens: 8,
        stream_by_default: false,
    };
    let addr = mock.spawn("127.0.0.1:0".parse()?)?;
    println!("(using the embedded mock LLM at http://{addr}/v1)");
    Ok(LlmConfig::new(format!("http://{addr}/v1"), "mock"))
}

fn main() -> Result<(), BoxError> {
    logging::init("info");
    Node::start(NodeConfig::default(), |ctx| async move {
        let agent = ctx.spawn(Assistant {
            llm: LlmClient::new(llm_config()?),
            memory: vec![ChatMessage::system("You are a concise assistant.")],
        });
        for question in [
            "Name three prime numbers.",
            "Which of them is the largest?",
            "What did I ask you first?",
        ] {
            let answer = ctx
                .send_and_receive(agent, question, Duration::from_secs(120))
                .await?;
            println!("> {question}\n{answer}");
        }
        Ok::<_, BoxError>(())
    })??;
    Ok(())
}
