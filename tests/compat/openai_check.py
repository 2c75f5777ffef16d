"""The unmodified `openai` package against cofferd's chat completions: models.list, a
completion, a streamed completion (with the prefix cache's cached_tokens), a json_schema response that parses, and the error it
raises on a bad key. Prints "openai compatibility: OK" when every check passes."""

import json
import os
import openai

url = os.environ["COFFER_URL"] + "/v1"
ca = os.environ["COFFER_CA"]
key = os.environ["COFFER_API_KEY"]
client = openai.OpenAI(base_url=url, api_key=key, http_client=openai.DefaultHttpxClient(verify=ca))

models = [m.id for m in client.models.list()]
assert "smollm2-135m" in models, models

messages = [{"role": "user", "content": "What is the capital of France?"}]
done = client.chat.completions.create(
    model="smollm2-135m", messages=messages, temperature=0, max_tokens=16
)
text = done.choices[0].message.content
assert done.object == "chat.completion" and text, done
assert done.choices[0].finish_reason in ("stop", "length"), done
assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens

parts = []
usage = None
for chunk in client.chat.completions.create(
    model="smollm2-135m",
    messages=messages,
    temperature=0,
    max_tokens=16,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            parts.append(choice.delta.content)
assert "".join(parts) == text, ("".join(parts), text)
assert usage is not None and usage.completion_tokens == done.usage.completion_tokens
# The same prompt a second time: its leading chunks came from the prefix cache, and the
# package reads how many (usage.prompt_tokens_details.cached_tokens).
assert done.usage.prompt_tokens_details.cached_tokens == 0, done.usage
assert 0 < usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens, usage

schema = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
shaped = client.chat.completions.create(
    model="smollm2-135m",
    messages=[{"role": "user", "content": "Name a city in France as JSON."}],
    temperature=0,
    max_tokens=40,
    response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
)
if shaped.choices[0].finish_reason == "stop":
    value = json.loads(shaped.choices[0].message.content)
    assert isinstance(value["city"], str), value

bad = openai.OpenAI(base_url=url, api_key="cof_not_a_key", http_client=openai.DefaultHttpxClient(verify=ca))
try:
    bad.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=2)
    raise SystemExit("a bad key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401, e

print("openai compatibility: OK")
