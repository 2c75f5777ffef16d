//! Chat beside scoring: chat decodes on all its threads until a scoring request comes,
//! on `threads_beside_scoring` while they come, and answers the same either way.

use http::Method;
use serde_json::{Value, json};

use crate::chat::{model_dir, post};
use crate::common::{Setup, eval_set, fixture, metric};

fn ask(user: &str) -> Vec<u8> {
    json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": user }],
        "temperature": 0,
        "max_tokens": 24,
    })
    .to_string()
    .into_bytes()
}

fn answer(body: &Value) -> String {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn chat_gives_a_thread_to_scoring_and_answers_the_same() {
    let Some(dir) = model_dir() else { return };
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    s.chat_extra = format!(
        "models = [\"{}\"]\nthreads = 2\nthreads_beside_scoring = 1\nscoring_quiet = \"10m\"\ncontext = 512\n",
        dir.display()
    );
    let d = s.start().await;
    let key = s.create_key("app", "chat,score,metrics", None);
    let c = s.client(d.addr);
    let threads = |text: &str| {
        metric(
            text,
            "coffer_chat_threads{model=\"smollm2-135m\",version=\"1.0.0\"}",
        )
    };
    let question = "Name three colours of the rainbow.";

    let r = post(&c, &key, &ask(question)).await;
    assert_eq!(r.status.as_u16(), 200);
    let alone = answer(&r.json());
    let m = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).into_owned();
    assert_eq!(threads(&m), Some(2.0), "no scoring yet: every thread");

    let row = &eval_set("credit-lr").rows[0];
    let body = json!({ "inputs": [{ "name": "features", "shape": [1, row.len()], "datatype": "FP32", "data": row }] });
    let r = c
        .request(
            Method::POST,
            "/v2/models/credit-lr/infer",
            Some(&key),
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200);

    let r = post(&c, &key, &ask(question)).await;
    assert_eq!(r.status.as_u16(), 200);
    let beside = answer(&r.json());
    let m = String::from_utf8_lossy(&c.get("/metrics", Some(&key)).await.body).into_owned();
    assert_eq!(
        threads(&m),
        Some(1.0),
        "scoring within scoring_quiet: one thread given back"
    );
    assert_eq!(alone, beside, "the thread count changes no answer");
}
