using UsageBilling.Web.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.AddStripeAccess();
builder.AddBillingAndDatabase();
builder.AddWebUi();
builder.AddTelemetry();

var app = builder.Build();
await app.StartStripeEmulatorAsync();
app.MapApp();
app.MapTelemetry();
await app.RunAsync();
