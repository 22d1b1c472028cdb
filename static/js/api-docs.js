// Start Swagger UI on /docs with the app's own OpenAPI document (see app/apidocs.py).
(() => {
  const root = document.getElementById("swagger-ui");
  // eslint-disable-next-line no-undef
  SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // eslint-disable-next-line no-undef
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
