// Where components find the backend and the app model: Svelte context, set once by `App`
// (or by a test's wrapper), so components never import an implementation.

import { getContext, setContext } from 'svelte';

import type { AppModel } from './app.svelte';
import type { Backend } from './backend';

const BACKEND = Symbol('backend');
const APP = Symbol('app');

export function provide(backend: Backend, app: AppModel): void {
  setContext(BACKEND, backend);
  setContext(APP, app);
}

export function useBackend(): Backend {
  const backend = getContext<Backend | undefined>(BACKEND);
  // Invariant: App (and every test harness) calls `provide` before mounting children.
  if (!backend) throw new Error('no backend in context');
  return backend;
}

export function useApp(): AppModel {
  const app = getContext<AppModel | undefined>(APP);
  if (!app) throw new Error('no app model in context');
  return app;
}
