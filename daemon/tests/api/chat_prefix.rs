//! Prompt-prefix reuse with the real SmolLM2-135M: a warm request (its system prompt's
//! KV, or a whole earlier exchange's, taken from a held slot or copied from a busy one)
//! gives byte for byte the greedy answer a daemon without reuse gives, streamed and
//! not, alone and beside other streams; `usage.prompt_tokens_details.cached_tokens`
//! and the prefix metrics say how much was reused; a system prompt seen twice is saved
//! in the state directory and reused by the first request after a restart.

use serde_json::{Value, json};

use crate::chat::{model_dir, post, text_and_usage};
use crate::common::{Client, Daemon, Setup};

/// A service policy of about 200 tokens, as a branch application sends on every request.
const POLICY: &str = "You are the customer service assistant of a bank branch. Answer in \
    one or two short sentences, politely, in plain words. Never ask for a customer's full \
    card number, PIN, online banking password or one-time code, and never repeat one back \
    if a customer writes it. Opening hours are Monday to Friday from nine to five and \
    Saturday from nine to twelve. A lost or stolen card is blocked at once by calling the \
    number on the back of the statement, at any hour. Savings accounts pay interest \
    monthly; fixed deposits of twelve months pay more than those of six months, and an \
    early withdrawal loses the interest of the current month. Mortgage questions go to an \
    adviser by appointment; do not estimate rates. Foreign currency must be ordered two \
    working days ahead. Complaints are recorded by branch staff and answered within \
    fifteen working days. If a question is not about the bank's services, say that you \
    can only help with banking questions. If you are unsure, say that a member of staff \
    will help at the counter.";

/// The first two share a long opening (past a chunk): a reuse that ran into the user
/// message would compute its rest in other chunks than a cold start.
const QUESTIONS: [&str; 6] = [
    "Good morning. I opened a savings account at this branch last spring together with \
     my husband, and we also keep a small fixed deposit for our daughter's studies that \
     renews every twelve months. We are planning a long trip abroad next summer and \
     would like to be well prepared before we leave. When are you open on Saturday?",
    "Good morning. I opened a savings account at this branch last spring together with \
     my husband, and we also keep a small fixed deposit for our daughter's studies that \
     renews every twelve months. We are planning a long trip abroad next summer and \
     would like to be well prepared before we leave. How early must I order dollars?",
    "Can I take money out of a fixed deposit early?",
    "What rate will my mortgage have?",
    "I lost my card, what should I do?",
    "What is the weather tomorrow?",
];

fn setup(dir: &std::path::Path, reuse: bool) -> Setup {
    let mut s = Setup::new();
    s.chat_extra = format!(
        "models = [\"{}\"]\nthreads = 1\ncontext = 1024\nslots = 3\nn_batch = 64\n\
         keep_alive = \"200ms\"\nprefix_reuse = {reuse}\n",
        dir.display()
    );
    s
}

fn ask(messages: &Value, stream: bool) -> Vec<u8> {
    json!({
        "model": "smollm2-135m",
        "messages": messages,
        "temperature": 0,
        "max_tokens": 24,
        "stream": stream,
        "stream_options": if stream { json!({ "include_usage": true }) } else { Value::Null },
    })
    .to_string()
    .into_bytes()
}

fn service(question: &str) -> Value {
    json!([
        { "role": "system", "content": POLICY },
        { "role": "user", "content": question }
    ])
}

/// The answer and `usage` of a completion, streamed or not.
async fn complete(c: &Client, key: &str, messages: &Value, stream: bool) -> (String, Value) {
    text_and_usage(&post(c, key, &ask(messages, stream)).await, stream)
}

fn cached(usage: &Value) -> u64 {
    usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap()
}

async fn start(s: &Setup, key_name: &str) -> (Daemon, String, Client) {
    let d = s.start().await;
    let key = s.create_key(key_name, "chat,metrics", None);
    let c = s.client(d.addr);
    (d, key, c)
}

/// A multi-turn conversation: the earlier exchange, then a new question.
fn conversation(first_answer: &str) -> Value {
    json!([
        { "role": "system", "content": POLICY },
        { "role": "user", "content": QUESTIONS[1] },
        { "role": "assistant", "content": first_answer },
        { "role": "user", "content": "And how long does a new card take?" }
    ])
}

#[tokio::test]
async fn warm_answers_equal_cold_ones_and_saved_system_prompts_survive_a_restart() {
    let Some(dir) = model_dir() else { return };
    // The cold answers: a daemon that never reuses.
    let cold_setup = setup(&dir, false);
    let (d, key, c) = start(&cold_setup, "cold").await;
    let mut cold = Vec::new();
    for q in QUESTIONS {
        let (answer, usage) = complete(&c, &key, &service(q), false).await;
        assert_eq!(cached(&usage), 0);
        cold.push(answer);
    }
    let cold_turn = complete(&c, &key, &conversation(&cold[1]), false).await.0;
    d.stop();

    let s = setup(&dir, true);
    let (d, key, c) = start(&s, "warm").await;
    let (first, usage) = complete(&c, &key, &service(QUESTIONS[0]), false).await;
    assert_eq!(first, cold[0]);
    assert_eq!(cached(&usage), 0, "nothing held yet");
    let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap();
    // One after the other, streamed and not: the policy's KV is reused.
    let mut policy_tokens = 0;
    for (i, q) in QUESTIONS.iter().enumerate().skip(1) {
        let (answer, usage) = complete(&c, &key, &service(q), i % 2 == 0).await;
        assert_eq!(
            answer,
            cold[i],
            "warm answer {i} (streamed: {})",
            i % 2 == 0
        );
        let hit = cached(&usage);
        assert!(hit >= 192 && hit < prompt_tokens, "{usage}");
        policy_tokens = hit;
    }
    // Side by side: three at once, sharing the held policy (one slot holds it; the
    // others get it copied from a busy slot or compute it).
    let tasks: Vec<_> = [2usize, 3, 4]
        .into_iter()
        .map(|i| {
            let (c, key) = (c.clone(), key.clone());
            tokio::spawn(async move { (i, complete(&c, &key, &service(QUESTIONS[i]), true).await) })
        })
        .collect();
    for t in tasks {
        let (i, (answer, _)) = t.await.unwrap();
        assert_eq!(answer, cold[i], "concurrent warm answer {i}");
    }
    // A second turn reuses the first turn's prompt, and answers as a cold start does.
    let (turn, usage) = complete(&c, &key, &conversation(&cold[1]), true).await;
    assert_eq!(turn, cold_turn, "the second turn");
    assert!(cached(&usage) >= policy_tokens, "{usage}");
    let metrics = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).into_owned();
    let value = |name: &str| {
        crate::common::metric(
            &metrics,
            &format!("{name}{{model=\"smollm2-135m\",version=\"1.0.0\"}}"),
        )
        .unwrap_or(0.0)
    };
    let (hit, queried) = (
        value("coffer_chat_prefix_cache_hit_tokens_total"),
        value("coffer_chat_prefix_cache_queried_tokens_total"),
    );
    assert!(hit > 0.0 && hit < queried, "{hit} of {queried}");
    assert!(
        value("coffer_chat_prefix_cache_saved_bytes") > 0.0,
        "the policy, seen more than once, is saved"
    );
    d.stop();
    let saved: Vec<_> = std::fs::read_dir(s.dir().join("state/chat-prefix"))
        .unwrap()
        .flatten()
        .flat_map(|v| std::fs::read_dir(v.path()).unwrap().flatten())
        .collect();
    assert_eq!(saved.len(), 1, "one system prompt saved: {saved:?}");

    // After a restart the first request finds the policy already computed.
    let (d, key, c) = start(&s, "after-restart").await;
    let (answer, usage) = complete(&c, &key, &service(QUESTIONS[5]), false).await;
    assert_eq!(answer, cold[5], "the first answer after a restart");
    assert!(cached(&usage) >= 192, "{usage}");
    d.stop();
}
