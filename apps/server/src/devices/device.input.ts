import { Field, InputType, Int } from '@nestjs/graphql';
import { IsInt, IsOptional, IsString, Length, Max, Min } from 'class-validator';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';

/** A new device of the calling user. */
@InputType()
export class RegisterDeviceInput {
  @Field(() => String, { nullable: true, description: 'Shown to the user; 1–64 characters' })
  @IsOptional()
  @IsString()
  @Length(1, 64)
  name?: string | null;

  @Field(() => BytesScalar, {
    nullable: true,
    description: 'MLS signature public key; if absent, the first key-package upload binds it',
  })
  @IsOptional()
  signatureKey?: Buffer | null;

  @Field(() => Int, { nullable: true, description: 'Low-water mark for available key packages' })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(10_000)
  keyPackageLowWater?: number | null;
}
