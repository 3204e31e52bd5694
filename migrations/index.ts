import { Foundation1795352400000 } from './1795352400000-Foundation.js';

/** Every migration, oldest first. A landed migration is never edited; add a new one here. */
export const migrations = [Foundation1795352400000];
