#!/usr/bin/env python3
"""Drive a running `sailvl serve` with the official `openai` Python client (a manual check; CI does not
need Python).

    pip install openai            # or: tools/reference/.venv/bin/pip install openai
    sailvl serve -m DIR --port 8080 &
    python3 tools/serve/openai_check.py --base-url http://127.0.0.1:8080/v1 [--image cat.jpg] [--api-key KEY]

It lists the models, asks a text question (non-streamed), streams an answer, sends an image as a
data URL, continues that conversation for a second turn, and checks an error comes back as the
client's BadRequestError. Every step prints what it got; the exit status is 0 when all passed.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
import sys

import openai


def data_url(path: str) -> str:
    mime = mimetypes.guess_type(path)[0] or "image/png"
    with open(path, "rb") as f:
        return f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--api-key", default="none", help="the server's --api-key (any string when it has none)")
    ap.add_argument("--image", help="a picture to ask about (default: none, the image steps are skipped)")
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key)

    models = client.models.list()
    model = models.data[0].id
    print(f"models: {[m.id for m in models.data]}")

    r = client.chat.completions.create(model=model, max_tokens=a.max_tokens, temperature=0,
                                       messages=[{"role": "user", "content": "Hello, who are you?"}])
    print(f"text: {r.choices[0].message.content!r} (finish {r.choices[0].finish_reason}, usage {r.usage})")

    pieces = []
    stream = client.chat.completions.create(model=model, max_tokens=a.max_tokens, temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Hello, who are you?"}])
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    streamed = "".join(pieces).strip()
    print(f"stream: {streamed!r} (usage {usage})")
    ok = streamed == (r.choices[0].message.content or "").strip()
    print("stream == non-streamed answer:", ok)

    if a.image:
        first = [{"role": "user", "content": [{"type": "text", "text": "Describe the image."},
                                              {"type": "image_url", "image_url": {"url": data_url(a.image)}}]}]
        r1 = client.chat.completions.create(model=model, max_tokens=a.max_tokens, temperature=0, messages=first)
        print(f"image: {r1.choices[0].message.content!r} (usage {r1.usage})")
        second = first + [{"role": "assistant", "content": r1.choices[0].message.content},
                          {"role": "user", "content": "What colours are in it?"}]
        r2 = client.chat.completions.create(model=model, max_tokens=a.max_tokens, temperature=0, messages=second)
        print(f"second turn: {r2.choices[0].message.content!r} (usage {r2.usage})")

    try:
        client.chat.completions.create(model=model, messages=[{"role": "bot", "content": "hi"}])
        print("error: a bad role was accepted")
        ok = False
    except openai.BadRequestError as e:
        print(f"bad request -> {e.status_code}: {e.body}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
