import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';
import { defineConfig } from 'vitest/config';

// The Tauri shell loads `dist/` from disk and serves `npm run dev` on a fixed port
// (`devUrl` in src-tauri/tauri.conf.json), so the port must not wander.
export default defineConfig({
  // `svelteTesting` resolves Svelte's browser build under Vitest and cleans up after each test.
  plugins: [svelte(), svelteTesting()],
  clearScreen: false,
  server: { port: 1420, strictPort: true },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // WebKitGTK 2.50 and the macOS/Windows webviews Tauri 2 supports all run ES2022.
    target: 'es2022',
    // Inline nothing as data: URLs, so the strict CSP (no data: sources) holds for every asset.
    assetsInlineLimit: 0,
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.ts'],
    include: ['src/**/*.test.ts'],
    reporters: ['default', './src/test/summary-reporter.ts'],
  },
});
