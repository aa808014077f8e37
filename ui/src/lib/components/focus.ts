// Keyboard focus helpers shared by the modal dialog and the participant menu.

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

export function focusableIn(container: HTMLElement): HTMLElement[] {
  return Array.from(container.querySelectorAll<HTMLElement>(FOCUSABLE)).filter(
    (element) => !element.hasAttribute('inert') && element.getAttribute('aria-hidden') !== 'true',
  );
}

/// Keeps Tab and Shift+Tab inside `container` (WAI-ARIA modal dialog pattern).
export function trapTab(event: KeyboardEvent, container: HTMLElement): void {
  if (event.key !== 'Tab') return;
  const items = focusableIn(container);
  const first = items[0];
  const last = items[items.length - 1];
  if (!first || !last) {
    event.preventDefault();
    return;
  }
  const active = document.activeElement;
  if (event.shiftKey && (active === first || !container.contains(active))) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (active === last || !container.contains(active))) {
    event.preventDefault();
    first.focus();
  }
}

/// Focuses the element marked `data-autofocus`, else the first focusable one, else the
/// container itself.
export function focusInitial(container: HTMLElement): void {
  const marked = container.querySelector<HTMLElement>('[data-autofocus]');
  const target = marked ?? focusableIn(container)[0] ?? container;
  target.focus();
}
