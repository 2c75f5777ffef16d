"""The unmodified `openai` package against cofferd's chat completions: models.list, a
completion, a streamed completion (with the prefix cache's cached_tokens), a json_schema response that parses, and the error it
raises on a bad key; and its embeddings.create (the package's default base64 encoding and
floats) against the reference vectors. Prints "openai compatibility: OK" when every check
passes."""

import json
import math
import os
import struct
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

# Embeddings: the package asks for base64 unless told otherwise and decodes it itself.
sentences = open(os.environ["COFFER_EMBED_REFERENCE"] + "/sentences.txt", encoding="utf-8").read().splitlines()[:3]
raw = open(os.environ["COFFER_EMBED_REFERENCE"] + "/vectors.f32", "rb").read()
reference = [struct.unpack_from("<384f", raw, i * 384 * 4) for i in range(3)]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


assert "all-minilm-l6-v2" in models, models
for fmt in (openai.NOT_GIVEN, "float"):
    got = client.embeddings.create(model="all-minilm-l6-v2", input=sentences, encoding_format=fmt)
    assert [d.index for d in got.data] == [0, 1, 2], got.data
    for d, ref in zip(got.data, reference):
        assert len(d.embedding) == 384
        assert cosine(d.embedding, ref) >= 0.999, cosine(d.embedding, ref)
    assert got.usage.prompt_tokens == got.usage.total_tokens > 3, got.usage
try:
    client.embeddings.create(model="all-minilm-l6-v2", input="x", dimensions=64)
    raise SystemExit("dimensions the model does not have were accepted")
except openai.BadRequestError as e:
    assert e.code == "unsupported_dimensions", e

print("openai compatibility: OK")
