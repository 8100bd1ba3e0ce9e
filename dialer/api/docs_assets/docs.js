// The engine's own document, rendered by the Swagger UI served beside this file: nothing is fetched
// from anywhere else (no validator badge, no CDN).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  defaultModelsExpandDepth: 0,
});
