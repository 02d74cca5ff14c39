//! One resource per path. Every method a path has is registered on the same actix resource,
//! so a method it lacks is answered 405 with `Allow` naming the ones it has, in the JSON
//! envelope. A route registered alone carries its method as a guard and, when the method does
//! not match, falls through to the 404 of unknown paths, which tells a client the wrong thing.

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::{Method, header};
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, web};

use crate::error::{ApiError, ErrorCode};

/// The methods of one path, built like a resource: `endpoint("/x").get(a).post(b)`.
pub(crate) struct Endpoint {
    resource: Resource,
    methods: Vec<Method>,
}

/// The endpoint at `path` (an actix pattern), with no method yet.
pub(crate) fn endpoint(path: &str) -> Endpoint {
    Endpoint {
        resource: web::resource(path),
        methods: Vec::new(),
    }
}

macro_rules! method {
    ($name:ident, $method:expr) => {
        pub(crate) fn $name<F, Args>(self, handler: F) -> Self
        where
            F: Handler<Args>,
            Args: FromRequest + 'static,
            F::Output: Responder + 'static,
        {
            self.on($method, handler)
        }
    };
}

impl Endpoint {
    method!(get, Method::GET);
    method!(head, Method::HEAD);
    method!(post, Method::POST);
    method!(put, Method::PUT);
    method!(patch, Method::PATCH);
    method!(delete, Method::DELETE);

    fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::method(method.clone()).to(handler));
        self.methods.push(method);
        self
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let allow = self
            .methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { method_not_allowed(&req, &allow) }
            }))
            .register(config);
    }
}

fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let error = ApiError::message(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on this path; allowed: {allow}",
            req.method()
        ),
    );
    let mut response = actix_web::ResponseError::error_response(&error);
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
