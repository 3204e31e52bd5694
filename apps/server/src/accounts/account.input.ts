import { Field, InputType } from '@nestjs/graphql';
import { IsString, Length, Matches } from 'class-validator';

/** Username and password, for signing up and signing in. */
@InputType()
export class CredentialsInput {
  @Field({
    description: '3–32 characters: letters, digits, dot, dash, underscore; case-insensitive',
  })
  @IsString()
  @Matches(/^[A-Za-z0-9._-]{3,32}$/, {
    message: 'username must be 3–32 letters, digits, dots, dashes or underscores',
  })
  username!: string;

  @Field({ description: '8–256 characters' })
  @IsString()
  @Length(8, 256)
  password!: string;
}
