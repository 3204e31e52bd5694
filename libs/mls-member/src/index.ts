export * from './mls-member.js';
