import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { ClaimKeyPackagesInput, UploadKeyPackagesInput } from './key-package.input.js';
import { KeyPackageClaimModel, KeyPackageCountModel } from './key-package.model.js';
import { KeyPackagesService } from './key-packages.service.js';

/** Upload, count and claim MLS key packages. */
@Resolver()
export class KeyPackagesResolver {
  constructor(private readonly keyPackages: KeyPackagesService) {}

  @Mutation(() => KeyPackageCountModel, {
    description:
      "Validates and stores key packages for one of the caller's devices (all or nothing)",
  })
  uploadKeyPackages(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: UploadKeyPackagesInput,
  ): Promise<KeyPackageCountModel> {
    return this.keyPackages.upload(
      principal.userId,
      input.deviceId,
      input.keyPackages,
      input.lastResort ?? undefined,
    );
  }

  @Mutation(() => KeyPackageClaimModel, {
    description:
      'Consumes one key package of every device of the named users, to add them to a group',
  })
  claimKeyPackages(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: ClaimKeyPackagesInput,
  ): Promise<KeyPackageClaimModel> {
    return this.keyPackages.claim(principal.userId, input.deviceId, input.userIds);
  }

  @Query(() => KeyPackageCountModel, {
    description: "Key packages left on one of the caller's devices",
  })
  keyPackageCount(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
  ): Promise<KeyPackageCountModel> {
    return this.keyPackages.count(principal.userId, deviceId);
  }
}
