// Global-shortcut accelerators in the shell's syntax (`CommandOrControl+Shift+P`: modifiers,
// then a key named after `KeyboardEvent.code`), and how to show them.

const MODIFIER_CODES = new Set([
  'ControlLeft',
  'ControlRight',
  'ShiftLeft',
  'ShiftRight',
  'AltLeft',
  'AltRight',
  'MetaLeft',
  'MetaRight',
  'OSLeft',
  'OSRight',
]);

/// The accelerator for a key press, or `null` while only modifiers are down.
export function acceleratorFrom(event: KeyboardEvent): string | null {
  if (MODIFIER_CODES.has(event.code) || event.code === '') return null;
  const parts: string[] = [];
  if (event.ctrlKey) parts.push('Control');
  if (event.altKey) parts.push('Alt');
  if (event.shiftKey) parts.push('Shift');
  if (event.metaKey) parts.push('Super');
  parts.push(event.code.replace(/^Key([A-Z])$/, '$1').replace(/^Digit(\d)$/, '$1'));
  return parts.join('+');
}

/// `CommandOrControl+Shift+P` → `Ctrl+Shift+P` (the UI shows what to press on this desktop).
export function describeAccelerator(accelerator: string): string {
  return accelerator
    .split('+')
    .map((part) => (part === 'CommandOrControl' || part === 'CmdOrCtrl' || part === 'Control' ? 'Ctrl' : part))
    .map((part) => part.replace(/^Key([A-Z])$/, '$1').replace(/^Digit(\d)$/, '$1'))
    .join('+');
}

/// The key part of an accelerator as `describeAccelerator` spells it (`P`, `F9`, `Space`).
function mainKey(accelerator: string): string {
  return describeAccelerator(accelerator).split('+').at(-1) ?? '';
}

/// Whether a key press is `accelerator` (modifiers included).
export function pressMatches(event: KeyboardEvent, accelerator: string): boolean {
  const pressed = acceleratorFrom(event);
  return pressed !== null && describeAccelerator(pressed) === describeAccelerator(accelerator);
}

/// Whether a key release ends `accelerator`: its main key went up (modifiers may already be up).
export function releaseMatches(event: KeyboardEvent, accelerator: string): boolean {
  const released = acceleratorFrom(new KeyboardEvent('keyup', { code: event.code }));
  return released !== null && describeAccelerator(released) === mainKey(accelerator);
}
