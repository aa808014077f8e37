// The add-server form's field lists must match the Rust adapters they mirror: each adapter's
// `Settings` fields (serde names) and `SECRET_NAMES`. Read from the Rust sources, so a field
// added or renamed there fails here.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { BACKENDS, backendSpec, fieldError, isCleartextRemote, profileNameError } from '../lib/backends';
import type { BackendKind } from '../lib/types';

// `npm test` runs in `ui/`; the adapters are in the workspace beside it.
const ADAPTERS = resolve(process.cwd(), '../crates/control-plane/src/adapter') + '/';
const FILES: Record<BackendKind, string> = {
  livekit: 'livekit.rs',
  audioroom: 'audioroom.rs',
  meet: 'meet.rs',
  'lk-jwt': 'lk_jwt.rs',
  nip29: 'nip29.rs',
  distokoloshe: 'distokoloshe.rs',
  'token-endpoint': 'token_endpoint.rs',
};

function rustContract(kind: BackendKind): { fields: string[]; secrets: string[] } {
  const source = readFileSync(ADAPTERS + FILES[kind], 'utf8');
  const body = /pub struct Settings \{([\s\S]*?)\n\}/.exec(source)?.[1];
  const secrets = /pub const SECRET_NAMES: &\[&str\] = &\[([^\]]*)\]/.exec(source)?.[1];
  if (body === undefined || secrets === undefined) throw new Error(`cannot read the contract of ${kind}`);
  return {
    fields: [...body.matchAll(/^\s*pub (\w+):/gm)].map((match) => match[1] ?? ''),
    secrets: [...secrets.matchAll(/"([^"]+)"/g)].map((match) => match[1] ?? ''),
  };
}

// Fields the form fills itself or leaves to the adapter's defaults on purpose.
const NOT_ASKED: Partial<Record<BackendKind, string[]>> = {
  // From `begin_discourse_auth`.
  audioroom: ['client_id'],
  // Lobby timing: the defaults suit every Meet server we know.
  meet: ['lobby_poll_ms', 'lobby_wait_ms'],
};
// Secrets the form does not ask for: the adapter fills them in itself.
const NOT_ASKED_SECRETS: Partial<Record<BackendKind, string[]>> = {
  // The forum hands the key over through the browser.
  audioroom: ['user-api-key'],
  // The app JWT is cached by the adapter after signing in with the password.
  distokoloshe: ['app-jwt'],
};

describe('backend forms', () => {
  it.each(Object.keys(FILES) as BackendKind[])('%s asks for the fields and secrets its adapter takes', (kind) => {
    const contract = rustContract(kind);
    const spec = backendSpec(kind);
    const asked = [...spec.fields.map((field) => field.key), ...(NOT_ASKED[kind] ?? [])].sort();
    expect(asked, `the ${kind} form should mirror its Settings struct`).toEqual([...contract.fields].sort());
    const secrets = [...spec.secrets.map((secret) => secret.key), ...(NOT_ASKED_SECRETS[kind] ?? [])].sort();
    expect(secrets, `the ${kind} form should ask for its SECRET_NAMES`).toEqual([...contract.secrets].sort());
  });

  it('has one form per backend', () => {
    expect(BACKENDS.map((spec) => spec.kind).sort()).toEqual(Object.keys(FILES).sort());
  });

  it('checks names like the profile store does', () => {
    expect(profileNameError('home-1.a_b')).toBeNull();
    expect(profileNameError('')).not.toBeNull();
    expect(profileNameError('.hidden')).not.toBeNull();
    expect(profileNameError('a b')).not.toBeNull();
    expect(profileNameError('x'.repeat(65))).not.toBeNull();
  });

  it('checks URL schemes and number ranges', () => {
    const livekitUrl = backendSpec('livekit').fields[0];
    const heartbeat = backendSpec('audioroom').fields.find((field) => field.key === 'heartbeat_seconds');
    const template = backendSpec('token-endpoint').fields[0];
    if (!livekitUrl || !heartbeat || !template) throw new Error('fields missing');
    expect(fieldError(livekitUrl, 'wss://lk.example.org')).toBeNull();
    expect(fieldError(livekitUrl, 'https://lk.example.org')).toMatch(/ws:\/\/ or wss:\/\//);
    expect(fieldError(heartbeat, '')).toBeNull();
    expect(fieldError(heartbeat, '4')).toMatch(/at least 5/);
    expect(fieldError(heartbeat, '12.5')).toMatch(/whole number/);
    expect(fieldError(template, 'https://x.example/t?room={room}&id={identity}'), 'placeholders are allowed').toBeNull();
  });
});

describe('unencrypted addresses (mirrors control_plane::transport)', () => {
  it('flags http:// and ws:// to other machines only', () => {
    for (const url of ['http://voice.example.org', 'ws://lk.example.org:7880/rtc', 'http://user:pw@10.0.0.5:3000', 'http://[::2]:80', 'http://localhost.example.org']) {
      expect(isCleartextRemote(url), url).toBe(true);
    }
    for (const url of [
      'https://voice.example.org',
      'wss://lk.example.org',
      'http://127.0.0.1:3000',
      'ws://127.9.0.1',
      'http://localhost:8080/x',
      'ws://LOCALHOST.',
      'http://app.localhost',
      'http://[::1]:7880',
      'http://user@127.0.0.1',
      '',
      'not a url',
    ]) {
      expect(isCleartextRemote(url), url).toBe(false);
    }
  });
});

