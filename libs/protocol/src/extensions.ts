/**
 * Extension type of `last_resort` (draft-ietf-mls-extensions): 0x000A, the value OpenMLS and
 * mls-rs ship. A client marks the key package it uploads as `lastResort` with it, and the server
 * refuses a `lastResort` upload without it (and an ordinary one with it).
 */
export const LAST_RESORT_EXTENSION_TYPE = 0x000a;
