using UsageBilling.Web.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.AddStripeAccess();
builder.AddBillingAndDatabase();
builder.AddWebUi();

var app = builder.Build();
await app.StartStripeEmulatorAsync();
app.MapApp();
await app.RunAsync();
