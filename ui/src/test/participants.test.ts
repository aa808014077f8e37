import { fireEvent, screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';

import { renderInRoom } from './harness';

function ringOf(name: RegExp): HTMLElement {
  const tile = screen.getByRole('button', { name });
  return within(tile).getByTestId('speaking-ring');
}

describe('participants', () => {
  it("draws the speaking ring from each participant's level", async () => {
    const { backend } = await renderInRoom('Lounge');
    expect(ringOf(/^Alice/), 'nobody speaks before levels arrive').toHaveAttribute('data-speaking', 'false');

    backend.setLevels({ alice: -12, carol: -80 });

    const alice = await screen.findByRole('button', { name: /^Alice, moderator, speaking/ });
    const ring = within(alice).getByTestId('speaking-ring');
    expect(ring).toHaveAttribute('data-speaking', 'true');
    // −12 dBFS on a −60…0 scale: 0.80 of the full ring width.
    expect(ring.style.getPropertyValue('--level'), 'the ring width should follow the level').toBe('0.80');
    expect(ringOf(/^Carol/), 'a level below the speaking floor draws no ring').toHaveAttribute('data-speaking', 'false');
    expect(ringOf(/^Carol/).style.getPropertyValue('--level')).toBe('0.00');

    backend.setLevels({ alice: -90 });
    await screen.findByRole('button', { name: /^Alice, moderator, muted|^Alice, moderator$/ });
    expect(ringOf(/^Alice/), 'the ring goes when they stop').toHaveAttribute('data-speaking', 'false');
  });

  it('keeps each level with its participant when the room changes and redraws only the ring', async () => {
    const { backend } = await renderInRoom('Lounge');
    const carolTile = screen.getByRole('button', { name: /^Carol/ });
    backend.setLevels({ alice: -12, carol: -90 });
    await screen.findByRole('button', { name: /^Alice, moderator, speaking/ });
    await backend.invoke('moderate_participant', { identity: 'alice', action: 'kick' });
    await waitFor(() => expect(screen.queryByRole('button', { name: /^Alice/ })).toBeNull());

    // Alice's place in the levels now belongs to the next participant: the rings must follow.
    backend.setLevels({ carol: -12 });
    await screen.findByRole('button', { name: /^Carol, speaking/ });
    expect(ringOf(/^Bob/), "bob keeps his own (silent) level").toHaveAttribute('data-speaking', 'false');
    expect(screen.getByRole('button', { name: /^Carol/ }), 'the same tile, only its ring redrawn').toBe(carolTile);
  });

  it('shows initials and state marks', async () => {
    await renderInRoom('Lounge');
    const bob = screen.getByRole('button', { name: /^Bob Marley/ });
    expect(bob, 'Bob is muted').toHaveAccessibleName('Bob Marley, muted');
    expect(within(bob).getByText('BM'), 'no avatar: initials').toBeInTheDocument();
    expect(screen.getByRole('button', { name: /^Carol/ })).toHaveAccessibleName('Carol, poor connection');
    const me = screen.getByRole('group', { name: /^You/ });
    expect(me, 'our own tile is not a menu button').toBeInTheDocument();
  });

  it('marks someone sharing their screen as Live until they stop', async () => {
    const { backend } = await renderInRoom('Lounge');
    expect(screen.queryByTestId('live-mark'), 'nobody shares yet').toBeNull();

    backend.setSharing('carol', true);
    await waitFor(() => expect(screen.getByRole('button', { name: /^Carol/ })).toHaveAccessibleName('Carol, sharing their screen, poor connection'));
    const mark = screen.getByRole('button', { name: "Watch Carol's screen" });
    expect(mark).toHaveTextContent('Live');
    expect(screen.getAllByTestId('live-mark'), 'only Carol is live').toHaveLength(1);
    expect(screen.getByRole('button', { name: /^Bob Marley/ })).toHaveAccessibleName('Bob Marley, muted');

    backend.setSharing('carol', false);
    await waitFor(() => expect(screen.getByRole('button', { name: /^Carol/ })).toHaveAccessibleName('Carol, poor connection'));
    expect(screen.queryByTestId('live-mark')).toBeNull();
  });

  it('opens a share in the room from its Live mark, several side by side, and closes it', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    backend.setSharing('carol', true);
    backend.setSharing('bob', true);
    await user.click(await screen.findByRole('button', { name: "Watch Carol's screen" }));

    const carol = await screen.findByRole('figure', { name: "Carol's screen" });
    expect(backend.callsOf('watch_share')).toEqual([{ identity: 'carol' }]);
    expect(within(carol).getByText("Waiting for Carol's screen…"), 'no picture yet').toBeInTheDocument();
    expect(screen.getByRole('button', { name: "Stop watching Carol's screen" }), 'the mark shows it is open').toHaveAttribute('aria-pressed', 'true');

    await user.click(screen.getByRole('button', { name: "Watch Bob Marley's screen" }));
    await screen.findByRole('figure', { name: "Bob Marley's screen" });
    expect(screen.getAllByTestId('share-viewer').map((viewer) => viewer.dataset.identity), 'both, in the order opened').toEqual(['carol', 'bob']);

    const expand = within(carol).getByRole('button', { name: 'Full screen' });
    await user.click(expand);
    expect(within(carol).getByRole('button', { name: 'Exit full screen' })).toHaveAttribute('aria-pressed', 'true');
    expect(carol).toHaveClass('expanded');
    await user.keyboard('{Escape}');
    await waitFor(() => expect(carol).not.toHaveClass('expanded'));

    // Into a window of its own: the room view says where it went.
    await user.click(within(screen.getByRole('figure', { name: "Bob Marley's screen" })).getByRole('button', { name: "Open Bob Marley's screen in its own window" }));
    expect(backend.callsOf('pop_out_share')).toEqual([{ identity: 'bob' }]);
    await screen.findByText("Bob Marley's screen is open in its own window.");
    expect(screen.queryByRole('figure', { name: "Bob Marley's screen" })).toBeNull();

    await user.click(within(carol).getByRole('button', { name: 'Stop watching Carol' }));
    await waitFor(() => expect(screen.queryByRole('figure', { name: "Carol's screen" })).toBeNull());
    expect(backend.callsOf('unwatch_share')).toEqual([{ identity: 'carol' }]);

    // A share that ends closes its viewer, here its window.
    backend.setSharing('bob', false);
    await waitFor(() => expect(screen.queryByTestId('share-elsewhere')).toBeNull());
    expect(screen.queryByTestId('share-viewer')).toBeNull();
  });

  it('shows a watched share picture after picture, asking again after a quiet spell or a failure', async () => {
    const { backend, user } = await renderInRoom('Lounge', { frames: true });
    backend.setSharing('carol', true);
    await user.click(await screen.findByRole('button', { name: "Watch Carol's screen" }));
    const carol = await screen.findByRole('figure', { name: "Carol's screen" });
    const pictures = (): HTMLImageElement[] => Array.from(carol.querySelectorAll('img'));
    const asked = (): string[] => pictures().map((picture) => picture.getAttribute('src')?.replace(/viewer=\w+&/, '') ?? '');
    expect(asked(), 'one picture asked for').toEqual(['memory-frame://carol?n=1']);
    expect(within(carol).getByText("Waiting for Carol's screen…")).toBeInTheDocument();
    expect(within(carol).queryByTestId('share-size'), 'no size before a picture').toBeNull();

    // The first picture shows; the other <img> asks for the next.
    const [first] = pictures();
    await fireEvent.load(first!);
    await waitFor(() => expect(asked()).toEqual(['memory-frame://carol?n=1', 'memory-frame://carol?n=2']));
    expect(within(carol).getByTestId('share-picture')).toBe(first);
    expect(first).toHaveAttribute('alt', "Carol's screen");
    expect(within(carol).queryByText("Waiting for Carol's screen…")).toBeNull();
    backend.setShareSize('carol', 1920, 1080);
    expect(await within(carol).findByTestId('share-size')).toHaveTextContent('1920×1080');

    // The shell's long poll ends with no new picture (a still screen): asked again at once.
    const second = pictures()[1]!;
    const later = performance.now() + 5000;
    const clock = vi.spyOn(performance, 'now').mockReturnValueOnce(later);
    await fireEvent.error(second);
    clock.mockRestore();
    await waitFor(() => expect(asked()[1]).toBe('memory-frame://carol?n=3'));
    // A load that fails at once (the shell is busy or gone): asked again a second later.
    await fireEvent.error(second);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(asked()[1], 'not at once').toBe('memory-frame://carol?n=3');
    await waitFor(() => expect(asked()[1]).toBe('memory-frame://carol?n=4'), { timeout: 2000 });
    expect(within(carol).getByTestId('share-picture'), 'the last picture stays meanwhile').toBe(first);

    // The next picture takes the first one's place, which then waits for the one after.
    await fireEvent.load(second);
    await waitFor(() => expect(within(carol).getByTestId('share-picture')).toBe(second));
    expect(asked()[0]).toBe('memory-frame://carol?n=5');
    expect(first).toHaveAttribute('alt', '');
  });

  it('places a share the shell paints itself, hides it under a menu, and takes it away on close', async () => {
    // jsdom lays nothing out: the stage and the menu say where they are.
    const boxes: Record<string, DOMRect> = { stage: new DOMRect(40, 60, 611, 334), menu: new DOMRect(0, 0, 0, 0) };
    const layout = vi.spyOn(HTMLElement.prototype, 'getBoundingClientRect').mockImplementation(function (this: HTMLElement) {
      if (this.dataset.testid === 'share-stage') return boxes.stage!;
      if (this.classList.contains('menu')) return boxes.menu!;
      return new DOMRect(0, 0, 0, 0);
    });
    try {
      const { backend, user } = await renderInRoom('Lounge', { paints: true, frames: true });
      backend.setSharing('carol', true);
      await user.click(await screen.findByRole('button', { name: "Watch Carol's screen" }));
      const carol = await screen.findByRole('figure', { name: "Carol's screen" });
      const last = (): unknown => backend.callsOf('place_share').at(-1);
      await waitFor(() => expect(last()).toEqual({ identity: 'carol', rect: { x: 40, y: 60, width: 611, height: 334 } }));
      expect(carol.querySelectorAll('img'), 'the shell paints: no picture is loaded in the page').toHaveLength(0);
      expect(within(carol).getByTestId('share-stage')).toHaveAttribute('data-painted', 'true');
      expect(within(carol).getByText("Waiting for Carol's screen…")).toBeInTheDocument();
      backend.setShareSize('carol', 1920, 1080);
      await waitFor(() => expect(within(carol).queryByText("Waiting for Carol's screen…"), 'pictures arrive').toBeNull());

      // The room's layout moves the viewer: the next look tells the shell.
      boxes.stage = new DOMRect(40, 90, 640, 360);
      await waitFor(() => expect(last()).toEqual({ identity: 'carol', rect: { x: 40, y: 90, width: 640, height: 360 } }));

      // A menu over the viewer hides the picture at once (the page cannot draw over it), and
      // closing the menu shows it again.
      boxes.menu = new DOMRect(100, 120, 220, 300);
      await fireEvent.contextMenu(screen.getByRole('button', { name: /^Bob/ }), { clientX: 100, clientY: 120 });
      const menu = await screen.findByRole('dialog', { name: 'Bob Marley' });
      await waitFor(() => expect(last()).toEqual({ identity: 'carol', rect: { x: 40, y: 90, width: 0, height: 0 } }));
      await fireEvent.keyDown(menu, { key: 'Escape' });
      await waitFor(() => expect(last()).toEqual({ identity: 'carol', rect: { x: 40, y: 90, width: 640, height: 360 } }));
      // A menu elsewhere leaves it alone.
      boxes.menu = new DOMRect(700, 120, 220, 300);
      const placed = backend.callsOf('place_share').length;
      await fireEvent.contextMenu(screen.getByRole('button', { name: /^Bob/ }), { clientX: 700, clientY: 120 });
      await fireEvent.keyDown(await screen.findByRole('dialog', { name: 'Bob Marley' }), { key: 'Escape' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(backend.callsOf('place_share').slice(placed), 'nothing changed').toEqual([]);

      // A hidden window converts and paints nothing.
      const visibility = vi.spyOn(document, 'visibilityState', 'get').mockReturnValue('hidden');
      document.dispatchEvent(new Event('visibilitychange'));
      await waitFor(() => expect(last()).toEqual({ identity: 'carol', rect: { x: 40, y: 90, width: 0, height: 0 } }));
      visibility.mockRestore();
      document.dispatchEvent(new Event('visibilitychange'));
      await waitFor(() => expect(last()).toEqual({ identity: 'carol', rect: { x: 40, y: 90, width: 640, height: 360 } }));

      // Closing the viewer takes the picture away.
      await user.click(within(carol).getByRole('button', { name: 'Stop watching Carol' }));
      await waitFor(() => expect(last()).toEqual({ identity: 'carol', rect: null }));
    } finally {
      layout.mockRestore();
    }
  });

  it('splits a stage room into speakers and listeners, with raise and lower hand', async () => {
    const { backend, user } = await renderInRoom('Town hall', {}, 'forum');
    const speakers = screen.getByRole('list', { name: /Speakers/ });
    const listeners = screen.getByRole('list', { name: /Listeners/ });
    expect(within(speakers).getAllByRole('listitem').map((li) => li.textContent?.trim().split(/\s+/)[1])).toEqual(['Dana', 'Erin', 'Hana']);
    expect(within(speakers).getByRole('button', { name: 'Erin, speaker, deafened' }), 'the forum reports deafen').toBeInTheDocument();
    expect(within(speakers).getByRole('button', { name: 'Hana, speaker, hard muted by a moderator' })).toBeInTheDocument();
    expect(within(listeners).getByRole('group', { name: /^You, listener/ }), 'we join a stage as a listener').toBeInTheDocument();
    expect(within(listeners).getByRole('button', { name: 'Frank, listener, hand raised' })).toBeInTheDocument();
    expect(within(listeners).getByRole('button', { name: 'Gus, listener' })).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Raise hand' }));
    expect(backend.callsOf('set_hand_raised')).toEqual([{ raised: true }]);
    const lower = await screen.findByRole('button', { name: 'Lower hand' });
    expect(lower).toHaveAttribute('aria-pressed', 'true');
    expect(within(listeners).getByRole('group', { name: 'You, listener, hand raised' })).toBeInTheDocument();

    await user.click(lower);
    expect(backend.callsOf('set_hand_raised')).toEqual([{ raised: true }, { raised: false }]);
  });
});
