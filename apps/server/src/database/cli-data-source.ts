import { loadConfig } from '../config/config.js';
import { createDataSource } from './data-source.js';

/** For the TypeORM CLI (`npm run migration:run`): the DataSource the environment describes. */
export default await createDataSource({ ...loadConfig(), runMigrations: false });
