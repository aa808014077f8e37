// What the add-server form asks for, per backend. Each list mirrors that adapter's `Settings`
// struct and `SECRET_NAMES` in `crates/control-plane/src/adapter/*.rs`: field `key`s are the
// serde field names, secret `key`s the keyring entry names. Optional fields left empty are not
// sent, so the adapter's serde defaults apply.

import type { BackendKind } from './types';

export interface FieldSpec {
  key: string;
  label: string;
  required: boolean;
  kind: 'url' | 'text' | 'number' | 'select';
  placeholder?: string;
  help?: string;
  options?: readonly string[];
  /// For `url`: accepted schemes (default http/https).
  schemes?: readonly string[];
  /// For `number`: inclusive bounds.
  min?: number;
  max?: number;
}

export interface SecretSpec {
  key: string;
  label: string;
  required: boolean;
  help?: string;
}

export interface BackendSpec {
  kind: BackendKind;
  label: string;
  summary: string;
  fields: readonly FieldSpec[];
  secrets: readonly SecretSpec[];
  /// Audioroom: the user API key comes from the forum through the browser, not a text box.
  discourseAuth: boolean;
  /// The form may create the account on the server (disTokoloshe).
  canRegister?: boolean;
}

const WEB = ['http:', 'https:'] as const;
const SIGNALLING = ['ws:', 'wss:'] as const;
const RELAY = ['ws:', 'wss:', 'http:', 'https:'] as const;

export const BACKENDS: readonly BackendSpec[] = [
  {
    kind: 'livekit',
    label: 'LiveKit (self-hosted)',
    summary: 'Your own LiveKit server, with an API key and secret.',
    fields: [
      { key: 'url', label: 'Server URL', required: true, kind: 'url', schemes: SIGNALLING, placeholder: 'wss://livekit.example.org' },
      { key: 'api_key', label: 'API key', required: true, kind: 'text' },
      { key: 'identity', label: 'Identity', required: true, kind: 'text', help: 'The identity you join as.' },
      { key: 'display_name', label: 'Display name', required: false, kind: 'text', help: 'Defaults to the identity.' },
    ],
    secrets: [{ key: 'api-secret', label: 'API secret', required: true }],
    discourseAuth: false,
  },
  {
    kind: 'audioroom',
    label: 'Discourse (Audioroom)',
    summary: 'A Discourse forum with the Audioroom plugin; sign in through the forum.',
    fields: [
      { key: 'url', label: 'Forum URL', required: true, kind: 'url', placeholder: 'https://forum.example.org' },
      {
        key: 'heartbeat_seconds',
        label: 'Heartbeat (seconds)',
        required: false,
        kind: 'number',
        min: 5,
        max: 28,
        help: 'Leave empty for the default (20 s).',
      },
    ],
    secrets: [],
    discourseAuth: true,
  },
  {
    kind: 'meet',
    label: 'La Suite Meet',
    summary: 'A La Suite Meet site.',
    fields: [
      { key: 'url', label: 'Meet URL', required: true, kind: 'url', placeholder: 'https://meet.example.org' },
      { key: 'display_name', label: 'Display name', required: true, kind: 'text' },
    ],
    secrets: [
      { key: 'session-cookie', label: 'Session cookie', required: false, help: 'The sessionid cookie (or name=value if the site renames it); owners and admins need it to moderate.' },
      { key: 'csrf-token', label: 'CSRF token', required: false, help: 'The csrftoken cookie that goes with the session.' },
    ],
    discourseAuth: false,
  },
  {
    kind: 'lk-jwt',
    label: 'Matrix (Element Call)',
    summary: "A Matrix homeserver's lk-jwt-service.",
    fields: [
      { key: 'homeserver_url', label: 'Homeserver URL', required: true, kind: 'url', placeholder: 'https://matrix.example.org' },
      { key: 'user_id', label: 'Matrix ID', required: true, kind: 'text', placeholder: '@alice:example.org' },
      { key: 'device_id', label: 'Device ID', required: true, kind: 'text' },
      { key: 'room_id', label: 'Default room', required: false, kind: 'text', placeholder: '!room:example.org' },
      { key: 'service_url', label: 'lk-jwt-service URL', required: false, kind: 'url', help: 'Discovered from the homeserver when empty.' },
    ],
    secrets: [{ key: 'matrix-access-token', label: 'Access token', required: true }],
    discourseAuth: false,
  },
  {
    kind: 'nip29',
    label: 'Nostr (NIP-29 relay)',
    summary: 'A NIP-29 relay with LiveKit spaces.',
    fields: [
      { key: 'relay_url', label: 'Relay URL', required: true, kind: 'url', schemes: RELAY, placeholder: 'wss://relay.example' },
      { key: 'group', label: 'Default group', required: false, kind: 'text' },
    ],
    secrets: [{ key: 'nostr-key', label: 'Secret key (hex or nsec1…)', required: true }],
    discourseAuth: false,
  },
  {
    kind: 'distokoloshe',
    label: 'disTokoloshe',
    summary: 'A disTokoloshe server.',
    fields: [
      { key: 'url', label: 'Server URL', required: true, kind: 'url', placeholder: 'https://voice.example.org' },
      { key: 'username', label: 'Username', required: true, kind: 'text' },
    ],
    secrets: [{ key: 'password', label: 'Password', required: true }],
    discourseAuth: false,
    canRegister: true,
  },
  {
    kind: 'token-endpoint',
    label: 'Token endpoint',
    summary: 'Any URL that hands out a LiveKit token.',
    fields: [
      {
        key: 'url_template',
        label: 'URL template',
        required: true,
        kind: 'url',
        placeholder: 'https://example.org/token?room={room}&identity={identity}',
      },
      { key: 'method', label: 'Method', required: false, kind: 'select', options: ['GET', 'POST'] },
      { key: 'body_template', label: 'Body template (POST)', required: false, kind: 'text' },
      { key: 'header_name', label: 'Auth header name', required: false, kind: 'text', placeholder: 'Authorization' },
      { key: 'token_pointer', label: 'Token JSON pointer', required: false, kind: 'text', placeholder: '/token' },
      { key: 'url_pointer', label: 'URL JSON pointer', required: false, kind: 'text', placeholder: '/url' },
      { key: 'livekit_url', label: 'LiveKit URL', required: false, kind: 'url', schemes: SIGNALLING, help: 'Used when the answer has none.' },
      { key: 'identity', label: 'Identity', required: true, kind: 'text' },
      { key: 'display_name', label: 'Display name', required: false, kind: 'text' },
    ],
    secrets: [{ key: 'header-value', label: 'Auth header value', required: false, help: 'e.g. "Bearer xyz"' }],
    discourseAuth: false,
  },
];

export function backendSpec(kind: BackendKind): BackendSpec {
  const spec = BACKENDS.find((candidate) => candidate.kind === kind);
  // Invariant: BACKENDS lists every BackendKind (checked by backends.test.ts).
  if (!spec) throw new Error(`no form for backend ${kind}`);
  return spec;
}

/// Mirrors `control_plane::profile::check_name`.
export function profileNameError(name: string): string | null {
  if (name.length === 0) return 'Give the server a name.';
  if (name.length > 64) return 'Use at most 64 characters.';
  if (name.startsWith('.')) return 'The name may not start with a dot.';
  if (!/^[A-Za-z0-9._-]+$/.test(name)) return "Use only letters, digits, '.', '_' or '-'.";
  return null;
}

/// A field's problem, or `null` when it is acceptable (the Rust side validates again).
export function fieldError(field: FieldSpec, value: string): string | null {
  const trimmed = value.trim();
  if (trimmed.length === 0) return field.required ? `${field.label} is required.` : null;
  if (field.kind === 'url') {
    // Templates hold `{room}`-style placeholders that URL parsing rejects; check the scheme only.
    const schemes = field.schemes ?? WEB;
    const scheme = /^([a-z][a-z0-9+.-]*:)\/\//i.exec(trimmed)?.[1]?.toLowerCase();
    if (!scheme || !schemes.includes(scheme)) {
      return `${field.label} must start with ${schemes.map((s) => `${s}//`).join(' or ')}.`;
    }
  }
  if (field.kind === 'number') {
    const number = Number(trimmed);
    if (!Number.isInteger(number)) return `${field.label} must be a whole number.`;
    if (field.min !== undefined && number < field.min) return `${field.label} must be at least ${field.min}.`;
    if (field.max !== undefined && number > field.max) return `${field.label} must be at most ${field.max}.`;
  }
  return null;
}

/// Mirrors `control_plane::transport`: an unencrypted address (`http://`, `ws://`) whose host is
/// not this machine (`localhost`, `127.x.x.x`, `[::1]`). Such a profile needs the user's consent.
export function isCleartextRemote(value: string): boolean {
  const match = /^(https?|wss?):\/\/([^/?#]*)/i.exec(value.trim());
  if (!match) return false;
  const scheme = (match[1] ?? '').toLowerCase();
  if (scheme !== 'http' && scheme !== 'ws') return false;
  const authority = match[2] ?? '';
  const hostAndPort = authority.slice(authority.lastIndexOf('@') + 1).toLowerCase();
  const host = hostAndPort.startsWith('[') ? hostAndPort.slice(0, hostAndPort.indexOf(']') + 1) : hostAndPort.split(':')[0] ?? '';
  const name = host.replace(/\.$/, '');
  const loopback = name === 'localhost' || name.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(name) || name === '[::1]';
  return !loopback;
}
