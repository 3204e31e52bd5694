import { Field, ID, InputType } from '@nestjs/graphql';
import { ArrayMinSize, IsArray, IsOptional, IsString, IsUUID } from 'class-validator';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';

/** A batch of key packages for one of the caller's devices. */
@InputType()
export class UploadKeyPackagesInput {
  @Field(() => ID)
  @IsString()
  deviceId!: string;

  @Field(() => [BytesScalar], { description: 'Each an MLSMessage (wire format mls_key_package)' })
  @IsArray()
  keyPackages!: Buffer[];

  @Field(() => BytesScalar, {
    nullable: true,
    description:
      "Replaces the device's last-resort key package, handed out only when no other is left",
  })
  @IsOptional()
  lastResort?: Buffer | null;
}

/** Users to claim key packages of, on behalf of one of the caller's devices. */
@InputType()
export class ClaimKeyPackagesInput {
  @Field(() => ID, { description: 'The claiming device; it is never handed its own key package' })
  @IsString()
  deviceId!: string;

  @Field(() => [ID])
  @IsArray()
  @ArrayMinSize(1)
  @IsUUID('all', { each: true })
  userIds!: string[];
}
