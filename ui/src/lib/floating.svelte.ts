// Layers the page draws over itself (dialogs, menus). Where the shell paints a watched share
// itself, its picture is a native surface over the page that nothing in the page can cover, so
// a viewer hides its picture while one of these overlaps it.

export const floating = $state({ layers: [] as readonly HTMLElement[] });

/// Svelte action: `node` is a floating layer while it is in the page.
export function floatingLayer(node: HTMLElement): { destroy: () => void } {
  floating.layers = [...floating.layers, node];
  return {
    destroy() {
      floating.layers = floating.layers.filter((layer) => layer !== node);
    },
  };
}

/// Whether any floating layer overlaps `box`.
export function coveredByLayer(box: DOMRect): boolean {
  return floating.layers.some((layer) => {
    const other = layer.getBoundingClientRect();
    return other.left < box.right && other.right > box.left && other.top < box.bottom && other.bottom > box.top;
  });
}
