// check.mjs streams through the relay with the official OpenAI and Anthropic
// SDKs, exactly as an application would, and prints one JSON line with what
// each SDK handed back. app/sdk_test.go runs it and judges the result; this
// script only reports, so a broken relay shows up as data, not as a crash.
//
// Environment:
//   RELAY_BASE_URL  the relay's OpenAI base, ending in /v1 (required); the
//                   Anthropic SDK appends /v1/messages itself, so it gets
//                   the same URL without the /v1
//   RELAY_KEY       the relay key (required)
//   MOCK_CHUNKS     content chunks the mock upstream sends (X-Mock-Chunks),
//                   default 5
//
// Retries are off: a retried request would hide the failure under test.
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.RELAY_BASE_URL;
const key = process.env.RELAY_KEY;
if (!base || !key) {
  console.error('check.mjs: RELAY_BASE_URL and RELAY_KEY must be set');
  process.exit(2);
}
const chunks = process.env.MOCK_CHUNKS || '5';
const clientOptions = {
  apiKey: key,
  maxRetries: 0,
  timeout: 20_000,
  defaultHeaders: { 'X-Mock-Chunks': chunks },
};
const messages = [{ role: 'user', content: 'Say the test tokens.' }];

// version reads a dependency's version from its package.json, for the report.
function version(name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')).version;
}

// failure is what the report keeps of an exception.
function failure(err) {
  return {
    name: err?.constructor?.name ?? typeof err,
    status: err?.status ?? null,
    message: String(err?.message ?? err),
    cause: err?.cause ? String(err.cause.message ?? err.cause) : null,
  };
}

// call runs fn and returns its result, or the partial result and the error.
async function call(fn) {
  const out = {};
  try {
    await fn(out);
  } catch (err) {
    out.error = failure(err);
  }
  return out;
}

function headersOf(response) {
  return {
    status: response.status,
    request_id: response.headers.get('x-request-id'),
    content_type: response.headers.get('content-type'),
  };
}

async function openaiChecks() {
  const client = new OpenAI({ ...clientOptions, baseURL: base });

  const stream = await call(async (out) => {
    const { data, response } = await client.chat.completions
      .create(
        { model: 'gpt-test', messages, stream: true, stream_options: { include_usage: true } },
        { query: { sdkcheck: 'openai-stream' } },
      )
      .withResponse();
    Object.assign(out, headersOf(response), { chunks: 0, content_chunks: 0, text: '', usage: null, finish_reason: null });
    for await (const chunk of data) {
      out.chunks++;
      for (const choice of chunk.choices ?? []) {
        if (choice.delta?.content) {
          out.content_chunks++;
          out.text += choice.delta.content;
        }
        if (choice.finish_reason) out.finish_reason = choice.finish_reason;
      }
      if (chunk.usage) out.usage = chunk.usage;
    }
  });

  const create = await call(async (out) => {
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-test', messages }, { query: { sdkcheck: 'openai-create' } })
      .withResponse();
    Object.assign(out, headersOf(response), {
      text: data.choices?.[0]?.message?.content ?? null,
      finish_reason: data.choices?.[0]?.finish_reason ?? null,
      usage: data.usage ?? null,
    });
  });

  // The Responses API, streamed: typed events, text in output_text.delta,
  // usage in response.completed.
  const responses = await call(async (out) => {
    const { data, response } = await client.responses
      .create({ model: 'gpt-test', input: 'Say the test tokens.', stream: true }, { query: { sdkcheck: 'openai-responses' } })
      .withResponse();
    Object.assign(out, headersOf(response), { events: 0, text_deltas: 0, text: '', types: [], usage: null, final_text: null });
    for await (const ev of data) {
      out.events++;
      if (!out.types.includes(ev.type)) out.types.push(ev.type);
      if (ev.type === 'response.output_text.delta') {
        out.text_deltas++;
        out.text += ev.delta;
      }
      if (ev.type === 'response.completed') {
        out.usage = ev.response.usage
          ? { input_tokens: ev.response.usage.input_tokens, output_tokens: ev.response.usage.output_tokens }
          : null;
        out.final_text = ev.response.output_text ?? null;
      }
    }
  });

  return { version: version('openai'), stream, create, responses };
}

async function anthropicChecks() {
  // The SDK appends /v1/messages to its base URL.
  const client = new Anthropic({ ...clientOptions, baseURL: base.replace(/\/v1\/?$/, '') });
  const params = { model: 'claude-test', max_tokens: 64, messages };

  // The raw event stream, as messages.create({stream: true}) yields it.
  const stream = await call(async (out) => {
    const { data, response } = await client.messages
      .create({ ...params, stream: true }, { query: { sdkcheck: 'anthropic-stream' } })
      .withResponse();
    Object.assign(out, headersOf(response), { events: 0, text_deltas: 0, text: '', types: [], usage: {}, stop_reason: null });
    for await (const ev of data) {
      out.events++;
      if (!out.types.includes(ev.type)) out.types.push(ev.type);
      if (ev.type === 'message_start') out.usage.input_tokens = ev.message.usage?.input_tokens ?? null;
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') {
        out.text_deltas++;
        out.text += ev.delta.text;
      }
      if (ev.type === 'message_delta') {
        out.usage.output_tokens = ev.usage?.output_tokens ?? null;
        out.stop_reason = ev.delta?.stop_reason ?? null;
      }
    }
  });

  // The MessageStream helper, which checks the event order and accumulates
  // the final message itself.
  const helper = await call(async (out) => {
    const ms = client.messages.stream(params, { query: { sdkcheck: 'anthropic-helper' } });
    let text = '';
    ms.on('text', (delta) => {
      text += delta;
    });
    const { response } = await ms.withResponse();
    Object.assign(out, headersOf(response));
    const msg = await ms.finalMessage();
    Object.assign(out, {
      text,
      final_text: msg.content.map((b) => (b.type === 'text' ? b.text : '')).join(''),
      usage: msg.usage ? { input_tokens: msg.usage.input_tokens, output_tokens: msg.usage.output_tokens } : null,
      stop_reason: msg.stop_reason,
    });
  });

  return { version: version('@anthropic-ai/sdk'), stream, helper };
}

const report = { node: process.version, openai: await openaiChecks(), anthropic: await anthropicChecks() };
process.stdout.write(JSON.stringify(report) + '\n');
