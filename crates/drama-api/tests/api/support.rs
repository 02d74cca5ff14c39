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

/// The API as the tests call it: what [`Harness::service`] and [`service_of`] build.
pub trait Api: Service<Request, Response = ServiceResponse, Error = actix_web::Error> {}

impl<S: Service<Request, Response = ServiceResponse, Error = actix_web::Error>> Api for S {}

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

    /// A harness whose image model refuses every prompt that mentions `word`.
    pub async fn refusing_images_of(word: &'static str) -> Self {
        let refusing = Refusing {
            inner: drama_ai::OfflineProvider::new(0),
            word,
        };
        Self::with_ai(drama_ai::AiProviders::offline(0).with_image_model(Arc::new(refusing))).await
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

/// The API over `app` with the request context as its only middleware (no CORS), and the
/// harness's settings.
pub async fn plain_service_of(app: App) -> impl Api + use<> {
    test::init_service(
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .configure(drama_api::configure(ApiState::new(
                app,
                Harness::settings(),
            ))),
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
    let dead_peer_timeout = settings.dead_peer_timeout;
    let state = ApiState::new(app, settings);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .wrap(drama_api::middleware::cors(&cors))
            .configure(drama_api::configure(state.clone()))
    })
    .workers(1)
    .disable_signals()
    .on_connect(drama_api::connection::on_connect(dead_peer_timeout))
    .bind(("127.0.0.1", 0))
    .unwrap();
    let base = format!("127.0.0.1:{}", server.addrs()[0].port());
    let running = server.run();
    let handle = running.handle();
    actix_web::rt::spawn(running);
    Listening { base, handle }
}

/// Stores, over HTTP at `server`, a small drama `id` (one character, one episode of one scene)
/// for the holder of `credential`.
pub async fn store_drama_over_http(server: &Listening, credential: &str, id: &str) {
    let status = reqwest::Client::new()
        .post(format!("http://{}/dramas", server.base))
        .bearer_auth(credential)
        .json(&json!({"drama": drama_testkit::builders::drama_json(id, 1, 1, 1)}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fails unless `generated` is the committed file `file` of this crate; with the variable
/// `update` set, rewrites the file first. The failure names the command that regenerates it:
/// the test `test` with `update` set.
pub fn assert_committed(file: &str, generated: &str, update: &str, test: &str) {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os(update).is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "crates/drama-api/{file} is out of date; regenerate it with \
         `{update}=1 cargo test -p drama-api --test api {test}` and review the diff"
    );
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

/// Creates, as the holder of `key`, the drama `id` (one character, one episode of one scene)
/// whose character's description mentions `word`; answers the character's id.
pub async fn create_drama_mentioning(svc: &impl Api, key: &str, id: &str, word: &str) -> String {
    let mut drama = drama_testkit::builders::drama_json(id, 1, 1, 1);
    drama["characters"][0]["description"] = json!(format!("A {word} figure in a long coat"));
    let (status, _, body) = send(svc, post_json("/dramas", key, json!({ "drama": drama }))).await;
    assert_eq!(status, 201, "{body}");
    body["characters"][0]["id"].as_str().unwrap().to_owned()
}

/// Starts, as the holder of `key`, the drama `id` written from `premise`; answers the
/// accepted (202) body.
pub async fn start_premise(svc: &impl Api, key: &str, premise: &str, id: &str) -> Value {
    let body = json!({"premise": premise, "id": id});
    let (status, _, body) = send(svc, post_json("/dramas", key, body)).await;
    assert_eq!(status, 202, "{body}");
    body
}

/// `POST /graphql` of `query` by the holder of `key`: the status and the answer.
pub async fn graphql(svc: &impl Api, key: &str, query: &str) -> (u16, Value) {
    graphql_body(svc, key, json!({ "query": query })).await
}

/// `POST /graphql` of `query` with `variables` by the holder of `key`: the status and the
/// answer.
pub async fn graphql_with(
    svc: &impl Api,
    key: &str,
    query: &str,
    variables: Value,
) -> (u16, Value) {
    graphql_body(svc, key, json!({"query": query, "variables": variables})).await
}

/// `POST /graphql` of the request `body` by the holder of `key`: the status and the answer.
pub async fn graphql_body(svc: &impl Api, key: &str, body: Value) -> (u16, Value) {
    let (status, _, answer) = send(svc, post_json("/graphql", key, body)).await;
    (status, answer)
}

/// The first GraphQL error of `answer` has the code `code` and a message that mentions `text`.
pub fn assert_graphql_error(answer: &Value, code: &str, text: &str) {
    let error = &answer["errors"][0];
    assert_eq!(error["extensions"]["code"], code, "{answer}");
    assert!(
        error["message"].as_str().unwrap().contains(text),
        "{answer}"
    );
}

/// The text `field` of every element of the JSON array `list`, in order.
pub fn field_of_each<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|element| element[field].as_str().unwrap())
        .collect()
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

/// `PATCH uri` without a body (yet), by the holder of `key`.
pub fn patch(uri: &str, key: &str) -> test::TestRequest {
    test::TestRequest::patch()
        .uri(uri)
        .insert_header(bearer(key))
}

/// `PATCH uri` with a JSON body, by the holder of `key`.
pub fn patch_json(uri: &str, key: &str, body: impl serde::Serialize) -> test::TestRequest {
    patch(uri, key).set_json(body)
}

/// `DELETE uri` by the holder of `key`.
pub fn delete(uri: &str, key: &str) -> test::TestRequest {
    test::TestRequest::delete()
        .uri(uri)
        .insert_header(bearer(key))
}

/// A 1×1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// The boundary of every multipart form the tests send.
pub const BOUNDARY: &str = "----drama-test-boundary";

/// One file part of a multipart form: the part `field` holding `bytes` as the file `filename`
/// of `content_type`.
pub fn file_part(field: &str, filename: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut part = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; \
         filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    part.extend_from_slice(bytes);
    part.extend_from_slice(b"\r\n");
    part
}

/// A multipart form of text `fields` and, before or after them, the `file` part `file`
/// (name, content type, bytes).
pub fn multipart(
    fields: &[(&str, &str)],
    file: Option<(&str, &str, &[u8])>,
    file_first: bool,
) -> Vec<u8> {
    let file = file
        .map(|(name, content_type, bytes)| file_part("file", name, content_type, bytes))
        .unwrap_or_default();
    let mut body = Vec::new();
    if file_first {
        body.extend_from_slice(&file);
    }
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if !file_first {
        body.extend_from_slice(&file);
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The library upload form of one image `file` into `project` under `tag`.
pub fn image_upload_form(project: &str, tag: &str, file: (&str, &str, &[u8])) -> Vec<u8> {
    let fields = [
        ("project_name", project),
        ("asset_type", "image"),
        ("tag", tag),
    ];
    multipart(&fields, Some(file), false)
}

/// The premise form of `POST /dramas`: `premise`, the drama `id`, then [`PNG`] as the
/// `reference_image` part.
pub fn premise_form_with_image(premise: &str, id: &str) -> Vec<u8> {
    let mut body = multipart(&[("premise", premise), ("id", id)], None, false);
    let end = format!("--{BOUNDARY}--\r\n");
    body.truncate(body.len() - end.len());
    body.extend_from_slice(&file_part("reference_image", "ref.png", "image/png", PNG));
    body.extend_from_slice(end.as_bytes());
    body
}

/// Uploads the multipart form `body` to the asset library as the holder of `key`; answers the
/// stored record (200).
pub async fn uploaded(svc: &impl Api, key: &str, body: Vec<u8>) -> Value {
    let (status, _, record) = send(svc, upload(key, body)).await;
    assert_eq!(status, 200, "{record}");
    record
}

/// `POST uri` of the multipart form `body`, by the holder of `key`.
pub fn post_form(uri: &str, key: &str, body: Vec<u8>) -> test::TestRequest {
    post(uri, key)
        .insert_header((
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ))
        .set_payload(body)
}

/// An upload of the multipart form `body` to the asset library, by the holder of `key`.
pub fn upload(key: &str, body: Vec<u8>) -> test::TestRequest {
    post_form("/asset-library/upload", key, body)
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
    pg_app_on(pool)
}

/// [`pg_app`] on a `pool` whose database is migrated already.
pub fn pg_app_on(pool: &sqlx::PgPool) -> (Arc<drama_postgres::PgStore>, App) {
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
