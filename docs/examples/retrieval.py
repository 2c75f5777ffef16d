"""Retrieval on the box with the unmodified `openai` package: embed a few product-sheet
paragraphs once, embed a customer's question, take the nearest paragraphs by cosine
similarity, and let the chat model answer from them. Nothing leaves the appliance.

    ./coffer dev &                      # serves all-minilm-l6-v2 and smollm2-135m
    source .coffer-dev/dev.env          # COFFER_URL, COFFER_CA, COFFER_API_KEY
    python3 docs/examples/retrieval.py "Can I take money out of my fixed term savings early?"
"""

import math
import os
import sys

import openai

client = openai.OpenAI(
    base_url=os.environ["COFFER_URL"] + "/v1",
    api_key=os.environ["COFFER_API_KEY"],
    http_client=openai.DefaultHttpxClient(verify=os.environ["COFFER_CA"]),
)

SHEETS = [
    "The Fixed Term Saver pays a guaranteed interest rate for one, two or three years; "
    "money cannot be withdrawn before the term ends without losing ninety days of interest.",
    "The Easy Access Saver lets customers deposit and withdraw at any time without notice, "
    "and interest is calculated daily and paid monthly.",
    "If a debit card is lost or stolen, call the card line at any hour or freeze the card "
    "in the mobile app; a replacement arrives within five working days.",
    "Branches are open from 9 am to 5 pm on weekdays and from 9 am to 1 pm on Saturdays; "
    "cash deposit machines are available around the clock.",
]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def embed(texts):
    answer = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    return [d.embedding for d in answer.data]


question = sys.argv[1] if len(sys.argv) > 1 else "When is the branch open on Saturday?"
sheet_vectors = embed(SHEETS)  # once, when the documents change
[q] = embed([question])
ranked = sorted(zip(SHEETS, sheet_vectors), key=lambda s: cosine(q, s[1]), reverse=True)
context = "\n".join(text for text, _ in ranked[:2])
for text, vector in ranked:
    print(f"{cosine(q, vector):.3f}  {text[:70]}...")

reply = client.chat.completions.create(
    model="smollm2-135m",
    temperature=0,
    max_tokens=80,
    messages=[
        {"role": "system", "content": "Answer the customer's question using only this information:\n" + context},
        {"role": "user", "content": question},
    ],
)
print("\nanswer:", reply.choices[0].message.content)
