// Who is signed in. A personal access token is kept in session storage
// (gone when the tab closes; never in local storage or a URL). The
// credential is a tagged value so that an OIDC sign-in can add a
// `bearer` kind beside `token` without touching the API client.

export interface Credential {
  kind: 'token';
  /** The Authorization header value. */
  header: string;
}

const KEY = 'meshplane.credential';
let listeners: ((reason?: string) => void)[] = [];

export function credential(): Credential | null {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return null;
  try {
    return JSON.parse(raw) as Credential;
  } catch {
    return null;
  }
}

/** Checks a token against the server and keeps it when it is accepted. */
export async function signInWithToken(token: string): Promise<void> {
  const header = `Token ${token.trim()}`;
  const response = await fetch('/api/users/current', { headers: { Authorization: header }, cache: 'no-store' });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = ((await response.json()) as { message?: string }).message ?? message;
    } catch {
      // The status line is the message then.
    }
    throw new Error(message);
  }
  sessionStorage.setItem(KEY, JSON.stringify({ kind: 'token', header } satisfies Credential));
}

export function signOut(reason?: string): void {
  sessionStorage.removeItem(KEY);
  for (const l of listeners) l(reason);
}

export function onSignOut(listener: (reason?: string) => void): void {
  listeners = [...listeners, listener];
}
