// The REST API client. Every call carries the signed-in credential; a
// failure is an ApiError holding the server's own message, shown as is.

import { credential, signOut } from './auth';

export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly code?: string) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const cred = credential();
  if (!cred) throw new ApiError('not signed in', 401);
  const headers: Record<string, string> = { Authorization: cred.header };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(`/api${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(`cannot reach the server: ${(e as Error).message}`, 0);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = (data as { message?: string } | null)?.message ?? `${response.status} ${response.statusText}`;
    if (response.status === 401) signOut(message);
    throw new ApiError(message, response.status, (data as { code?: string } | null)?.code);
  }
  return data as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body: unknown) => api<T>('POST', path, body);
export const put = <T>(path: string, body: unknown) => api<T>('PUT', path, body);
export const del = (path: string) => api<unknown>('DELETE', path);
