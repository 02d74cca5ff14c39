use std::sync::Arc;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::test;
use drama_api::{ApiState, HttpSettings};
use drama_app::{App, Ports};
use drama_dal::{ApiKeyRepository, MemoryStore, NewUser, UserRepository};
use drama_domain::UserId;
use serde_json::{Value, json};

/// An API over in-memory ports, with two users and a key each.
pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub jobs: Arc<drama_jobs::MemoryJobStore>,
    pub app: App,
    pub alice: UserId,
    pub alice_key: String,
    pub bob: UserId,
    pub bob_key: String,
    pub service_key: String,
}

pub async fn user_with_key(store: &MemoryStore, scopes: &[&str]) -> (UserId, String) {
    let id = UserId::random();
    store.create_user(&NewUser::new(id)).await.unwrap();
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let key = store
        .create_api_key(id, "test", &scopes, None)
        .await
        .unwrap();
    (id, key.key)
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_ai(drama_ai::AiProviders::offline(0)).await
    }

    /// A harness whose generations go to `ai`.
    pub async fn with_ai(ai: drama_ai::AiProviders) -> Self {
        Self::with_assets(Arc::new(drama_assets::MemoryStore::default()), ai).await
    }

    /// A harness whose objects go to `assets` and generations to `ai`.
    pub async fn with_assets(
        assets: Arc<dyn drama_assets::AssetStore>,
        ai: drama_ai::AiProviders,
    ) -> Self {
        let (ports, store, jobs) = Ports::memory(assets, ai);
        let app = App::new(ports);
        let (alice, alice_key) = user_with_key(&store, &[]).await;
        let (bob, bob_key) = user_with_key(&store, &[]).await;
        let (_, service_key) = user_with_key(&store, &["service"]).await;
        Self {
            store,
            jobs,
            app,
            alice,
            alice_key,
            bob,
            bob_key,
            service_key,
        }
    }

    /// A worker on the harness's job store.
    pub async fn worker(&self) -> drama_jobs::WorkerHandle<drama_jobs::MemoryJobStore> {
        let config = drama_jobs::WorkerConfig {
            poll_interval: std::time::Duration::from_millis(20),
            ..drama_jobs::WorkerConfig::default()
        };
        drama_jobs::Worker::start(self.jobs.clone(), self.app.registry(), config)
            .await
            .unwrap()
    }

    pub fn settings() -> HttpSettings {
        HttpSettings {
            rate_per_second: 0,
            ..HttpSettings::default()
        }
    }

    pub async fn service(
        &self,
        settings: HttpSettings,
    ) -> impl Service<Request, Response = ServiceResponse, Error = actix_web::Error> + use<> {
        service_of(self.app.clone(), settings).await
    }
}

/// The API over `app`, wrapped as the server wraps it.
pub async fn service_of(
    app: App,
    settings: HttpSettings,
) -> impl Service<Request, Response = ServiceResponse, Error = actix_web::Error> + use<> {
    let cors = settings.clone();
    let state = ApiState::new(app, settings);
    test::init_service(
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .wrap(drama_api::middleware::cors(&cors))
            .wrap(from_fn(boxed))
            .configure(drama_api::configure(state)),
    )
    .await
}

/// Gives every response one body type, so tests can name the service's type.
async fn boxed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse, actix_web::Error> {
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The API on a real loopback socket (for WebSocket clients); stopped when dropped.
pub struct Listening {
    pub base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_web::rt::spawn(async move { handle.stop(false).await });
    }
}

impl Harness {
    /// Serves the API on 127.0.0.1 (one HTTP worker) inside the current actix system.
    pub fn listen(&self, settings: HttpSettings) -> Listening {
        listen_app(self.app.clone(), settings)
    }
}

/// Serves `app` on 127.0.0.1 (one HTTP worker) inside the current actix system.
pub fn listen_app(app: App, settings: HttpSettings) -> Listening {
    let cors = settings.clone();
    let state = ApiState::new(app, settings);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .wrap(drama_api::middleware::cors(&cors))
            .configure(drama_api::configure(state.clone()))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let base = format!("127.0.0.1:{}", server.addrs()[0].port());
    let running = server.run();
    let handle = running.handle();
    actix_web::rt::spawn(running);
    Listening { base, handle }
}

/// Sends a request and returns status, headers and the JSON body (Null when empty or not JSON).
pub async fn send(
    service: &impl Service<Request, Response = ServiceResponse, Error = actix_web::Error>,
    request: test::TestRequest,
) -> (u16, actix_web::http::header::HeaderMap, Value) {
    let response = test::call_service(service, request.to_request()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = test::read_body(response).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

pub fn bearer(key: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {key}"))
}

/// Creates, as the holder of `key`, the drama `id` built by `drama_testkit::builders`.
pub async fn create_drama(
    service: &impl Service<Request, Response = ServiceResponse, Error = actix_web::Error>,
    key: &str,
    id: &str,
    (characters, episodes, scenes): (usize, usize, usize),
) {
    let drama = drama_testkit::builders::drama_json(id, characters, episodes, scenes);
    let (status, _, body) = send(service, post_json("/dramas", key, json!({"drama": drama}))).await;
    assert_eq!(status, 201, "{body}");
}

/// `GET uri` by the holder of `key`.
pub fn get(uri: &str, key: &str) -> test::TestRequest {
    test::TestRequest::get().uri(uri).insert_header(bearer(key))
}

/// `POST uri` without a body, by the holder of `key`.
pub fn post(uri: &str, key: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri(uri)
        .insert_header(bearer(key))
}

/// `POST uri` with a JSON body, by the holder of `key`.
pub fn post_json(uri: &str, key: &str, body: impl serde::Serialize) -> test::TestRequest {
    post(uri, key).set_json(body)
}

/// The offline image model, except that it refuses every prompt containing `word` (as a
/// provider's moderation would).
pub struct Refusing {
    pub inner: drama_ai::OfflineProvider,
    pub word: &'static str,
}

#[async_trait::async_trait]
impl drama_ai::ImageModel for Refusing {
    fn model(&self) -> drama_ai::ModelInfo {
        drama_ai::ImageModel::model(&self.inner)
    }
    fn max_references(&self) -> usize {
        self.inner.max_references()
    }
    async fn generate_image(
        &self,
        request: &drama_ai::ImageRequest,
    ) -> Result<drama_ai::Generated<drama_ai::GeneratedImage>, drama_ai::AiError> {
        if request.prompt.contains(self.word) {
            return Err(drama_ai::AiError::Refused {
                provider: drama_ai::Provider::Offline,
                reason: format!("the prompt mentions {}", self.word),
            });
        }
        self.inner.generate_image(request).await
    }
}

/// The query graphql-js (v16) `getIntrospectionQuery()` builds, which GraphiQL and the code
/// generators of the old clients send.
pub const FULL_INTROSPECTION: &str = r"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}";

/// A user of `store` with `tokens` credits, and an API key of theirs.
pub async fn pg_user(store: &drama_postgres::PgStore, tokens: i64) -> (UserId, String) {
    let user = UserId::random();
    let mut new = NewUser::new(user);
    new.tokens = tokens;
    store.create_user(&new).await.unwrap();
    let key = store
        .create_api_key(user, "pg", &[], None)
        .await
        .unwrap()
        .key;
    (user, key)
}

/// The use cases on PostgreSQL at `pool` (migrated here), with objects in memory and the
/// offline providers: what the binary wires, minus the bucket.
pub async fn pg_app(pool: &sqlx::PgPool) -> (Arc<drama_postgres::PgStore>, App) {
    drama_postgres::migrate(pool).await.unwrap();
    let store = Arc::new(drama_postgres::PgStore::new(pool.clone()));
    let jobs = drama_postgres::jobs::PgJobStore::new(pool.clone());
    let app = App::new(drama_app::Ports {
        store: store.clone(),
        assets: Arc::new(drama_assets::MemoryStore::default()),
        generation: store.clone(),
        jobs: Arc::new(drama_app::pipeline::jobs_port::EngineJobs(Arc::new(jobs))),
        ai: drama_ai::AiProviders::offline(0),
    });
    (store, app)
}

/// Log output kept in memory.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
