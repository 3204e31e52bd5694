/** Who is calling: always a Parley user; devices are named per operation and checked. */
export interface Principal {
  userId: string;
}
