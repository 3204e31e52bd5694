import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AccountsResolver } from './accounts.resolver.js';
import { AccountsService } from './accounts.service.js';
import { UserEntity } from './user.entity.js';

/** Users who sign up with a password; app-JWT users are created by the auth module. */
@Module({
  imports: [TypeOrmModule.forFeature([UserEntity])],
  providers: [AccountsService, AccountsResolver],
})
export class AccountsModule {}
