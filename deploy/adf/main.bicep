// Azure Data Factory for patientflow: a pipeline per job of `patientflow run`, each a Web
// activity that starts the run over REST (managed identity to the app registration) and
// follows its 202 Location until the run ends; the schedule triggers; the base URL and token
// audience as global parameters.
//
//   az deployment group create -g <resource group> -f deploy/adf/main.bicep \
//     -p factoryName=<name> patientflowBaseUrl=https://patientflow.example.org \
//        patientflowAppIdUri=api://patientflow
//
// Triggers are created stopped; start them with `az datafactory trigger start` (README.md).

@description('Name of the data factory (created if missing).')
param factoryName string

@description('Region of the data factory.')
param location string = resourceGroup().location

@description('Base URL of `patientflow run --serve`, without a trailing slash.')
param patientflowBaseUrl string

@description('Application ID URI of the patientflow app registration: the audience of the factory\'s managed-identity token.')
param patientflowAppIdUri string

resource factory 'Microsoft.DataFactory/factories@2018-06-01' = {
  name: factoryName
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    globalParameters: {
      patientflowBaseUrl: {
        type: 'String'
        value: patientflowBaseUrl
      }
      patientflowAppIdUri: {
        type: 'String'
        value: patientflowAppIdUri
      }
    }
  }
}

resource departmentsDaily 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: 'pf-departments-daily'
  properties: loadJsonContent('pipeline/pf-departments-daily.json').properties
}

resource ehrDaily 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: 'pf-ehr-daily'
  properties: loadJsonContent('pipeline/pf-ehr-daily.json').properties
}

resource goldHourly 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: 'pf-gold-hourly'
  properties: loadJsonContent('pipeline/pf-gold-hourly.json').properties
}

resource maintainNightly 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: 'pf-maintain-nightly'
  properties: loadJsonContent('pipeline/pf-maintain-nightly.json').properties
}

resource streamKeepalive 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: 'pf-adt-stream-keepalive'
  properties: loadJsonContent('pipeline/pf-adt-stream-keepalive.json').properties
}

resource dailyBatch 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: 'pf-daily-batch'
  properties: loadJsonContent('pipeline/pf-daily-batch.json').properties
  dependsOn: [
    departmentsDaily
    ehrDaily
  ]
}

resource dailyBatchTrigger 'Microsoft.DataFactory/factories/triggers@2018-06-01' = {
  parent: factory
  name: 'pf-daily-batch-0200'
  properties: loadJsonContent('trigger/pf-daily-batch-0200.json').properties
  dependsOn: [
    dailyBatch
  ]
}

resource goldHourlyTrigger 'Microsoft.DataFactory/factories/triggers@2018-06-01' = {
  parent: factory
  name: 'pf-gold-hourly'
  properties: loadJsonContent('trigger/pf-gold-hourly.json').properties
  dependsOn: [
    goldHourly
  ]
}

resource maintainTrigger 'Microsoft.DataFactory/factories/triggers@2018-06-01' = {
  parent: factory
  name: 'pf-maintain-0330'
  properties: loadJsonContent('trigger/pf-maintain-0330.json').properties
  dependsOn: [
    maintainNightly
  ]
}

resource keepaliveTrigger 'Microsoft.DataFactory/factories/triggers@2018-06-01' = {
  parent: factory
  name: 'pf-adt-stream-keepalive'
  properties: loadJsonContent('trigger/pf-adt-stream-keepalive.json').properties
  dependsOn: [
    streamKeepalive
  ]
}

@description('Object id of the factory\'s managed identity: assign it the PatientFlow.DataEngineer app role.')
output principalId string = factory.identity.principalId
